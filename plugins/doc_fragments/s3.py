# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment(object):
    # Connection options for an S3 or S3-compatible object store, as one dict option "s3".
    DOCUMENTATION = r"""
options:
  s3:
    description:
      - An S3 bucket and prefix to work on, with how to reach it.
      - Credentials may also come from the usual AWS environment variables or instance profile.
    type: dict
    suboptions:
      bucket:
        description: Bucket name. A missing bucket is an error; nothing is created.
        type: str
        required: true
      prefix:
        description: Key prefix (a "directory"); names are keys without it.
        type: str
        default: ""
      endpoint_url:
        description: Endpoint of an S3-compatible store, for example C(https://s3.internal:8333).
        type: str
      region:
        description: Region of the bucket.
        type: str
        default: us-east-1
      access_key:
        description: Access key ID.
        type: str
        aliases: [aws_access_key_id]
      secret_key:
        description: Secret access key. Never logged.
        type: str
        aliases: [aws_secret_access_key]
      session_token:
        description: Session token for temporary credentials. Never logged.
        type: str
      path_style:
        description: Use path-style addressing (C(endpoint/bucket/key)), which most S3-compatible stores need.
        type: bool
        default: false
      validate_certs:
        description: Verify the endpoint's TLS certificate.
        type: bool
        default: true
      ca_bundle:
        description: CA bundle to verify the endpoint with.
        type: path
requirements:
  - boto3 (for O(s3))
"""
