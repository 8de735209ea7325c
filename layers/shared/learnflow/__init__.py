"""LearnFlow shared layer: the code every Lambda function of the API uses."""
