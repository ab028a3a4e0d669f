"""`zen-flow submit|list|get|approve|reject|suspend|resume` as a user runs them: the installed command, a
kubeconfig, the real apiserver, a controller reconciling; the test plays the Job controller."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from controller_steps import WAIT, finish, job_of, jobs_by_step, wait_steps

from zen_flow_dev.cluster import find_kubectl
from zen_flow_dev.testing.controller import StartController
from zen_flow_dev.testing.driver import FlowDriver, step_phases
from zen_flow_dev.testing.flows import flow_manifest, job_step, manual_step
from zen_flow_dev.testing.jobstatus import complete_job, fail_job

pytestmark = pytest.mark.integration
COLOURS = re.compile(rb"\x1b\[[0-9;]*m")  # SGR sequences: colour, bold, reset


def cli(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "zen_flow", *args, "--kubeconfig", str(kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def _release(namespace: str) -> dict[str, Any]:
    steps = [job_step("build"), manual_step("gate", "build"), job_step("ship", "gate")]
    flow = flow_manifest(
        "release", namespace, steps, arguments={"parameters": [{"name": "env", "value": "dev"}]}
    )
    del flow["metadata"]["namespace"]  # as users write files: the namespace comes from -n
    return flow


async def test_a_release_driven_from_the_command_line(
    namespace: str, kubeconfig: Path, driver: FlowDriver, start_controller: StartController, tmp_path: Path
) -> None:
    start_controller()
    file = tmp_path / "release.yaml"
    file.write_text(yaml.safe_dump(_release(namespace)))

    done = cli(kubeconfig, "submit", str(file), "-n", namespace, "-p", "env=prod")
    assert (done.returncode, done.stdout) == (0, f"jobflow {namespace}/release created\n"), done.stderr
    flow = await driver.get(namespace, "release")
    assert flow is not None
    assert flow["spec"]["arguments"]["parameters"] == [{"name": "env", "value": "prod"}]

    await wait_steps(driver, namespace, "release", {"build": "Running"})
    listed = cli(kubeconfig, "list", "-n", namespace)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:3] == ["release", "Running", "0/3"]

    await finish(driver, namespace, "build")
    await driver.wait_phase(namespace, "release", phases=("Paused",), timeout=WAIT)
    shown = cli(kubeconfig, "get", "release", "-n", namespace)
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split()[1] for line in shown.stdout.split("\n\n")[1].splitlines()[1:]}
    assert rows == {"build": "Succeeded", "gate": "PendingApproval", "ship": "Pending"}

    wrong = cli(kubeconfig, "approve", "release", "ship", "-n", namespace)
    assert wrong.returncode == 2
    assert "step 'ship' of jobflow release is not a Manual step" in wrong.stderr
    approved = cli(kubeconfig, "approve", "release", "gate", "-n", namespace, "-m", "checked the staging run")
    assert approved.returncode == 0, approved.stderr
    flow = await wait_steps(driver, namespace, "release", {"gate": "Succeeded", "ship": "Running"})
    assert [(a["step"], a["decision"], a["message"]) for a in flow["status"]["audit"]["approvals"]] == [
        ("gate", "Approved", "checked the staging run")
    ]

    assert cli(kubeconfig, "suspend", "release", "-n", namespace).returncode == 0
    assert (await driver.get(namespace, "release") or {})["spec"]["suspend"] is True
    assert cli(kubeconfig, "resume", "release", "-n", namespace).returncode == 0
    assert (await driver.get(namespace, "release") or {})["spec"]["suspend"] is False

    as_json = cli(kubeconfig, "get", "release", "-n", namespace, "-o", "json")
    assert json.loads(as_json.stdout)["metadata"]["name"] == "release"


@pytest.mark.parametrize("follow", ["--wait", "--watch"])
async def test_submit_wait_exits_with_the_flows_outcome(
    namespace: str,
    kubeconfig: Path,
    driver: FlowDriver,
    start_controller: StartController,
    tmp_path: Path,
    follow: str,
) -> None:
    start_controller()
    for name, ok in (("good", True), ("bad", False)):
        (tmp_path / f"{name}.yaml").write_text(
            yaml.safe_dump(flow_manifest(name, namespace, [job_step("a")]))
        )
        command = [sys.executable, "-m", "zen_flow", "submit", str(tmp_path / f"{name}.yaml"), follow,
                   "--kubeconfig", str(kubeconfig)]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
        await wait_steps(driver, namespace, name, {"a": "Running"})
        job = await job_of(driver, namespace, "a", flow=name)
        await (complete_job if ok else fail_job)(
            driver.kube, namespace, job["metadata"]["name"]
        )  # while it waits
        out, _ = await asyncio.wait_for(proc.communicate(), WAIT)
        phase = "Succeeded" if ok else "Failed"
        lines = out.decode().splitlines()
        assert lines[0] == f"jobflow {namespace}/{name} created"
        if follow == "--wait":
            assert lines[-1].startswith(f"jobflow {namespace}/{name} {phase}: ")
        else:  # a line per change, as `zen-flow watch` prints them when piped
            assert [line.split()[1:3] for line in lines[1:]][-1] == [name, phase]
        assert proc.returncode == (0 if ok else 1), out


def test_submit_watch_follows_one_flow_only(namespace: str, kubeconfig: Path, tmp_path: Path) -> None:
    two = tmp_path / "two.yaml"
    two.write_text(
        yaml.safe_dump_all([flow_manifest(n, namespace, [job_step("a")]) for n in ("one", "other")])
    )
    done = cli(kubeconfig, "submit", str(two), "--watch")
    assert done.returncode == 2  # refused before anything was sent
    assert "--watch follows one flow; these files hold 2 (use --wait)" in done.stderr


def test_errors_say_what_went_wrong(
    namespace: str, kubeconfig: Path, tmp_path: Path, jobflow_crd: Any
) -> None:
    missing = cli(kubeconfig, "get", "nothing-here", "-n", namespace)
    assert missing.returncode == 1
    assert 'not found: jobflows.workflow.kube-zen.io "nothing-here" not found' in missing.stderr
    bad = flow_manifest("bad", namespace, [job_step("a", "ghost")])
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    refused = cli(kubeconfig, "submit", str(tmp_path / "bad.yaml"))
    assert refused.returncode == 2
    assert 'spec.steps[0].dependencies[0]: Not found: "ghost"' in refused.stderr
    nothing = cli(kubeconfig, "list", "-n", namespace)
    assert (nothing.returncode, nothing.stdout) == (0, "")  # nothing was created
    assert f"No JobFlows found in namespace {namespace}." in nothing.stderr


def test_the_namespace_defaults_to_the_kubeconfig_contexts(
    namespace: str, kubeconfig: Path, tmp_path: Path, kubectl: Any, jobflow_crd: Any
) -> None:
    config = yaml.safe_load(kubeconfig.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = namespace
    own = tmp_path / "kubeconfig"
    own.write_text(yaml.safe_dump(config))
    kubectl("create", "-f", "-", input=json.dumps(flow_manifest("here", namespace, [job_step("a")])))
    listed = cli(own, "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[0] == "here"


def test_the_same_program_is_a_kubectl_plugin(
    namespace: str, kubeconfig: Path, kubectl: Any, cluster: Any, jobflow_crd: Any
) -> None:
    kubectl("create", "-f", "-", input=json.dumps(flow_manifest("plugged", namespace, [job_step("a")])))
    binary = find_kubectl(getattr(cluster, "bin_dir", None))
    scripts = Path(sys.executable).parent  # where the package installed kubectl-jobflow
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(binary), "jobflow", "list", "-n", namespace, "--kubeconfig", str(kubeconfig)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[0] == "plugged"


async def test_watch_prints_each_change_and_ends_with_the_flow(
    namespace: str, kubeconfig: Path, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    await driver.create(flow_manifest("watched", namespace, [job_step("a"), job_step("b", "a")]))
    await wait_steps(driver, namespace, "watched", {"a": "Running"})
    command = [
        sys.executable,
        "-m",
        "zen_flow",
        "watch",
        "watched",
        "-n",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
    ]
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    first = await asyncio.wait_for(proc.stdout.readline(), WAIT)  # the state it found
    assert first.decode().split()[1:4] == ["watched", "Running", "0/2"]
    await finish(driver, namespace, "a")
    await wait_steps(driver, namespace, "watched", {"b": "Running"})
    await finish(driver, namespace, "b")
    rest, _ = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0  # the flow Succeeded
    lines = [line.split(maxsplit=4) for line in rest.decode().splitlines()]
    assert [line[2:4] for line in lines][-1] == ["Succeeded", "2/2"]
    assert ["Running", "1/2"] in [line[2:4] for line in lines]  # a step finished: one line for it


async def test_retry_reruns_the_failed_step_and_resubmit_starts_afresh(
    namespace: str, kubeconfig: Path, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    await driver.create(
        flow_manifest("nightly", namespace, [job_step("extract"), job_step("load", "extract")])
    )
    await wait_steps(driver, namespace, "nightly", {"extract": "Running"})
    await finish(driver, namespace, "extract", ok=False)
    await driver.wait_phase(namespace, "nightly", timeout=WAIT)

    done = cli(kubeconfig, "retry", "nightly", "-n", namespace)
    assert done.returncode == 0, done.stderr
    flow = await wait_steps(driver, namespace, "nightly", {"extract": "Running", "load": "Pending"})
    (retry,) = flow["status"]["audit"]["retries"]
    assert retry["steps"] == ["extract"]
    assert f"rerun requested ({retry['id']})" in done.stdout
    attempts = sorted(j["metadata"]["name"] for j in (await jobs_by_step(driver, namespace))["extract"])
    assert len(attempts) == 2  # the failed attempt's Job stays for its logs
    assert attempts[1].endswith("-r1")
    job = next(j for j in await driver.jobs(namespace) if j["metadata"]["name"] == attempts[1])
    await complete_job(driver.kube, namespace, job["metadata"]["name"])
    await wait_steps(driver, namespace, "nightly", {"extract": "Succeeded", "load": "Running"})
    await finish(driver, namespace, "load")
    flow = await driver.wait_phase(namespace, "nightly", timeout=WAIT)
    assert flow["status"]["phase"] == "Succeeded"

    again = cli(kubeconfig, "retry", "nightly", "-n", namespace)
    assert again.returncode == 2
    assert "jobflow nightly is Succeeded: only a Failed flow reruns" in again.stderr
    fresh = cli(kubeconfig, "resubmit", "nightly", "-n", namespace)
    assert fresh.returncode == 0, fresh.stderr
    name = fresh.stdout.split()[1].split("/")[1]
    assert name.startswith("nightly-")
    await wait_steps(driver, namespace, name, {"extract": "Running"})

    gone = cli(kubeconfig, "delete", "nightly", name, "-n", namespace)
    assert gone.stdout.splitlines() == [
        f"jobflow {namespace}/nightly deleted",
        f"jobflow {namespace}/{name} deleted",
    ]
    await driver.wait_gone(namespace, "nightly")
    await driver.wait_gone(namespace, name)


async def test_stop_fails_a_running_flow_and_retry_takes_it_up_again(
    namespace: str, kubeconfig: Path, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    await driver.create(flow_manifest("runaway", namespace, [job_step("a"), job_step("b", "a")]))
    await wait_steps(driver, namespace, "runaway", {"a": "Running"})
    stopped = cli(kubeconfig, "stop", "runaway", "-n", namespace)
    assert stopped.returncode == 0, stopped.stderr
    flow = await driver.wait_phase(namespace, "runaway", timeout=WAIT)
    failed = next(c for c in flow["status"]["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "Stopped"
    assert failed["message"].startswith("stopped by ")
    assert step_phases(flow) == {"a": "Failed", "b": "Skipped"}
    live = [j for j in await driver.jobs(namespace) if not j["metadata"].get("deletionTimestamp")]
    assert live == []  # the running Job was deleted
    assert cli(kubeconfig, "stop", "runaway", "-n", namespace).returncode == 2  # it has ended

    assert cli(kubeconfig, "retry", "runaway", "-n", namespace).returncode == 0
    flow = await wait_steps(driver, namespace, "runaway", {"a": "Running", "b": "Pending"})
    assert "workflow.kube-zen.io/stop" not in flow["metadata"].get("annotations", {})


async def test_watch_on_a_terminal_redraws_the_flow_in_place(
    namespace: str, kubeconfig: Path, driver: FlowDriver, start_controller: StartController
) -> None:
    start_controller()
    await driver.create(flow_manifest("shown", namespace, [job_step("a")]))
    await wait_steps(driver, namespace, "shown", {"a": "Running"})
    main, terminal = pty.openpty()  # what a person's terminal is: watch sees a TTY
    command = [
        sys.executable,
        "-m",
        "zen_flow",
        "watch",
        "shown",
        "-n",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
    ]
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | {"TERM": "xterm-256color"}
    proc = await asyncio.create_subprocess_exec(*command, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    seen = bytearray()

    def read_until(marker: bytes) -> None:
        while marker not in COLOURS.sub(b"", seen):  # what a person reads, whatever its colour
            chunk = os.read(main, 65536)  # blocks until the program writes; EOF raises OSError on Linux
            seen.extend(chunk)

    def drain() -> None:
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the program has exited and its terminal is closed
                return
            if not chunk:
                return
            seen.extend(chunk)

    try:
        await asyncio.wait_for(asyncio.to_thread(read_until, b"Phase:      Running"), WAIT)
        await finish(driver, namespace, "a")
        await asyncio.wait_for(asyncio.to_thread(read_until, b"Phase:      Succeeded"), WAIT)
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0
        await asyncio.wait_for(asyncio.to_thread(drain), WAIT)  # the rest of the last screen
    finally:
        if proc.returncode is None:
            proc.kill()
        os.close(main)
    assert b"\x1b[32mSucceeded\x1b[0m" in seen  # the phase in green
    screens = COLOURS.sub(b"", seen).split(b"\x1b[H\x1b[2J")[1:]  # each redraw: top of a cleared screen
    assert len(screens) >= 2
    assert screens[0].startswith(b"Name:       " + f"{namespace}/shown".encode())
    last = screens[-1].decode().replace("\r\n", "\n").splitlines()
    assert last[1] == "Phase:      Succeeded"
    assert last[-1].split()[:2] == ["a", "Succeeded"]


def tab(kubeconfig: Path, command: str, typed: str) -> list[str]:
    """The names bash, zsh or fish offer after `zen-flow COMMAND --kubeconfig K TYPED`: the program run as
    their completion scripts run it (argcomplete's protocol)."""
    line = f"zen-flow {command} --kubeconfig {kubeconfig} {typed}"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": "/dev/stdout"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "zen_flow"], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    words = (word.strip() for word in done.stdout.split("\n"))
    return sorted(word for word in words if word and not word.startswith("-"))  # names, not options


def test_tab_completes_flow_and_step_names_from_the_cluster(
    namespace: str, kubeconfig: Path, kubectl: Any, cluster: Any, jobflow_crd: Any
) -> None:
    for name in ("nightly", "nightly-eu", "weekly"):
        steps = [job_step("build"), manual_step("gate", "build"), job_step("ship", "gate")]
        kubectl("create", "-f", "-", input=json.dumps(flow_manifest(name, namespace, steps)))
    assert tab(kubeconfig, "get", f"-n {namespace} night") == ["nightly", "nightly-eu"]
    assert tab(kubeconfig, "delete", f"-n {namespace} weekly w") == ["weekly"]
    assert tab(kubeconfig, "get", "-n elsewhere night") == []  # the namespace typed is the one asked
    assert tab(kubeconfig, "logs", f"-n {namespace} weekly ") == ["build", "gate", "ship"]
    assert tab(kubeconfig, "approve", f"-n {namespace} weekly ") == ["gate"]  # Manual steps only

    # `kubectl jobflow <TAB>`: kubectl runs the plugin's kubectl_complete-jobflow (installed beside it).
    scripts = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run(
        [str(find_kubectl(getattr(cluster, "bin_dir", None))), "__complete", "jobflow", "get",
         "--kubeconfig", str(kubeconfig), "-n", namespace, "week"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    assert done.stdout.splitlines()[0] == "weekly", done.stdout


def _jobflow_requests(kubectl: Any) -> dict[str, float]:
    """The apiserver's own count of requests on jobflows, by verb, and the watches open on them now."""
    text = kubectl("get", "--raw", "/metrics").stdout
    counts: dict[str, float] = {}
    for line in text.splitlines():
        if 'resource="jobflows"' not in line or 'subresource="status"' in line:  # the writes below
            continue
        name = line.split("{", 1)[0]
        verb = line.split('verb="', 1)[1].split('"', 1)[0] if 'verb="' in line else ""
        if name == "apiserver_request_total":
            counts[verb] = counts.get(verb, 0.0) + float(line.rsplit(" ", 1)[1])
        elif name == "apiserver_longrunning_requests" and verb == "WATCH":
            counts["open watches"] = counts.get("open watches", 0.0) + float(line.rsplit(" ", 1)[1])
    return counts


async def test_watch_of_fifty_flows_is_one_watch(
    namespace: str, kubeconfig: Path, kubectl: Any, driver: FlowDriver, jobflow_crd: Any
) -> None:
    names = [f"flow-{i:02d}" for i in range(50)]
    await asyncio.gather(*(driver.create(flow_manifest(n, namespace, [job_step("a")])) for n in names))
    before = _jobflow_requests(kubectl)
    command = [sys.executable, "-m", "zen_flow", "watch", "-n", namespace, "--kubeconfig", str(kubeconfig)]
    proc = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    stdout = proc.stdout

    async def lines(count: int) -> list[list[str]]:
        return [(await stdout.readline()).decode().split() for _ in range(count)]

    try:
        found = await asyncio.wait_for(lines(50), WAIT)  # every flow once, as found
        assert sorted(line[1] for line in found) == names
        watching = _jobflow_requests(kubectl)
        assert watching.get("open watches", 0) - before.get("open watches", 0) == 1
        for name in names:  # 50 changes while it watches
            await driver.flows.patch_status(
                namespace, name, [{"op": "add", "path": "/status", "value": {"phase": "Running"}}]
            )
        changed = await asyncio.wait_for(lines(50), WAIT)
        assert sorted((line[1], line[2]) for line in changed) == [(n, "Running") for n in names]
    finally:
        proc.terminate()
        await proc.wait()
    after = _jobflow_requests(kubectl)
    # One LIST (the state to start from) and one WATCH, whatever the number of flows: no GET, no polling.
    assert after.get("LIST", 0) - before.get("LIST", 0) == 1
    assert after.get("GET", 0) == before.get("GET", 0)


async def test_names_that_are_not_there_and_namespaces_that_disagree_are_said_as_kubectl_says_them(
    namespace: str, kubeconfig: Path, driver: FlowDriver, tmp_path: Path, jobflow_crd: Any
) -> None:
    for name in ("one", "two"):
        await driver.create(flow_manifest(name, namespace, [job_step("a")]))
    names = cli(kubeconfig, "list", "-n", namespace, "-o", "name")
    assert names.stdout.splitlines() == [
        "jobflow.workflow.kube-zen.io/one",
        "jobflow.workflow.kube-zen.io/two",
    ]
    assert (
        cli(kubeconfig, "get", "one", "-n", namespace, "-o", "name").stdout
        == "jobflow.workflow.kube-zen.io/one\n"
    )
    # A missing name among several: said, and the others deleted all the same (exit 1).
    deleted = cli(kubeconfig, "delete", "one", "missing", "two", "-n", namespace)
    assert deleted.returncode == 1
    assert deleted.stdout.splitlines() == [
        f"jobflow {namespace}/one deleted",
        f"jobflow {namespace}/two deleted",
    ]
    assert f"jobflow {namespace}/missing not found" in deleted.stderr
    await driver.wait_gone(namespace, "two")
    # Not found is exit 1 for `watch` as for `get` (2 is for a usage error, with nothing sent).
    for verb in ("get", "watch"):
        missing = cli(kubeconfig, verb, "missing", "-n", namespace)
        assert (missing.returncode, missing.stderr) == (
            1,
            f'zen-flow {verb}: not found: jobflows.workflow.kube-zen.io "missing" not found\n',
        )
    # -n fills in a missing namespace; one the file names otherwise is refused before anything is sent.
    file = tmp_path / "elsewhere.yaml"
    file.write_text(
        yaml.safe_dump_all([flow_manifest("elsewhere", "prod", [job_step("a")]), {"kind": "ConfigMap"}])
    )
    refused = cli(kubeconfig, "submit", str(file), "-n", namespace)
    assert refused.returncode == 2
    assert f"the namespace of elsewhere in the file (prod) does not match -n {namespace}" in refused.stderr
    assert f"skipped {file}#2: ConfigMap (only JobFlows are read)" in refused.stderr
    assert await driver.get("prod", "elsewhere") is None
