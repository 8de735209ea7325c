"""LearnFlow command line: the administration CLI and the local stack (`learnflow serve`)."""
