"""Everything that talks to AWS: the error taxonomy, boto3 clients per identity, the namespace -> identity
mapping, tenancy grants, and the RDS and S3 gateways. The only package that imports boto3 or botocore."""
