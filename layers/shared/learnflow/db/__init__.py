"""DynamoDB access: the key grammar (`keys`) and one repository per aggregate."""
