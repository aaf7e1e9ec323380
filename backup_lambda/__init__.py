"""Capture: DynamoDB Streams records -> one versioned S3 object per item key."""
