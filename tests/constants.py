"""Names the tests share: the API's names as a user writes them, and the AWS values every example export uses.

Literals on purpose: the tests state what users see, not what the operator's modules happen to say.
"""

from __future__ import annotations

ACCOUNT = "123456789012"  # the stand-in's (moto's) default account
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/rds-s3-export"
KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b4a2e46-1f86-4b34-9d4f-0fbd5d2c3b7f"
BUCKET = "exports-bucket"

API_VERSION = "rdsexport.dev/v1alpha1"
KIND = "RdsExportTask"
PLURAL = "rdsexporttasks"  # for kubectl
FINALIZER = "rdsexport.dev/finalizer"
