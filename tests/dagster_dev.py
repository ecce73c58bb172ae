"""Run `tradenova ui` (the webserver and the daemon) on 127.0.0.1 for a test and talk to it
through its GraphQL API.

The web UI is a GraphQL client of this same API, so launching a backfill here is what a
user's click on "Materialize selected → backfill" does. It is stopped at the end as a user
stops it (SIGTERM: the command stops the webserver, the daemon and their code servers),
killed if it does not stop.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { id status numPartitions }
    ... on PythonError { message }
  }
}
"""

RUNS_OF_BACKFILL = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterDev:
    def __init__(self, repo_root: Path, env: dict, log_path: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "tradenova"), "ui", "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=repo_root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tradenova ui exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if requests.get(f"{self.url}/server_info", timeout=2).ok:
                    # The code location loads after the server answers: wait for it too.
                    data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name "
                                        "locationOrLoadError { __typename } } } } }")
                    entries = data["workspaceOrError"]["locationEntries"]
                    if entries and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation":
                        return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"tradenova ui did not become ready in {timeout} s; see {self.log.name}")

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        return body["data"]

    def launch_backfill(self, asset: str, partitions: list[str], tags: list[dict] | None = None) -> str:
        params = {"assetSelection": [{"path": [asset]}], "partitionNames": partitions, "tags": tags or []}
        result = self.graphql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        if result["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(result)
        return result["backfillId"]

    def wait_backfill(self, backfill_id: str, timeout: float = 600) -> str:
        deadline = time.time() + timeout
        status = None
        while time.time() < deadline:
            status = self.graphql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]["status"]
            if status in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
                return status
            time.sleep(2)
        raise TimeoutError(f"backfill {backfill_id} still {status} after {timeout} s")

    def backfill_runs(self, backfill_id: str) -> list[dict]:
        data = self.graphql(RUNS_OF_BACKFILL, {"filter": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}})
        return data["runsOrError"]["results"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)  # the command gives its children 30 s
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
