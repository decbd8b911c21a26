"""An S3-compatible service on loopback for the media store's tests: moto's server mode
(real HTTP, S3's own wire protocol), in a thread of the test process. ``objects`` reads the
bucket back through boto3, a client other than the one under test."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
KEY_ID, SECRET = "testing-key", "testing-secret"


@dataclass
class FakeS3:
    #: moto keeps its buckets per process, not per server: each fake has its own.
    bucket: str = field(default_factory=lambda: f"mashangyi-media-{secrets.token_hex(4)}")
    server: ThreadedMotoServer = field(init=False)
    endpoint_url: str = field(init=False, default="")

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        self.server.stop()

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=KEY_ID,
            aws_secret_access_key=SECRET,
        )

    def objects(self) -> dict[str, tuple[bytes, str]]:
        """Every object in the bucket: key → (bytes, content type)."""
        client, found = self.client(), {}
        for item in client.list_objects_v2(Bucket=self.bucket).get("Contents", []):
            answer = client.get_object(Bucket=self.bucket, Key=item["Key"])
            found[item["Key"]] = (answer["Body"].read(), answer["ContentType"])
        return found

    def config(self, prefix: str = "") -> str:
        """The ``[media]`` section pointing at this fake."""
        return (
            f'[media]\nbackend = "s3"\ns3_endpoint_url = "{self.endpoint_url}"\n'
            f's3_bucket = "{self.bucket}"\ns3_region = "{REGION}"\ns3_prefix = "{prefix}"\n'
            f's3_access_key_id = "{KEY_ID}"\ns3_secret_access_key = "{SECRET}"\n'
        )
