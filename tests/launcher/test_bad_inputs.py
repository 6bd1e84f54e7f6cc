"""Bad input through every command and input path: flags, job files, `--opt`, `--set`, store
records, rank-table flags, build flags, and the in-job entry points (resnest.train, eval,
export, serve), which refuse the same values with the same words.

Each case must exit 2 (usage) or 1 (runtime), print one error line that names the bad value,
never a traceback, and write nothing: the job store, the working folder and `--dest` are the
same before and after.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner

from launcher.cli import cli

from .conftest import rlaunch

JOB = "rn-abc123"  # the job id of the store-record cases


@dataclass
class Case:
    """One bad input: argv (`{work}` = the working folder, which holds `data/`), the expected
    exit code, and the text the error line must contain."""

    argv: list[str]
    code: int
    says: str
    files: dict[str, str | bytes] = field(default_factory=dict)  # made under {work} first
    record: str | bytes | None = None  # record.json of job JOB in the store
    # Files in JOB's folder of the store (None: a FIFO there).
    job_files: dict[str, str | None] = field(default_factory=dict)


def slurm(*args: str) -> list[str]:
    return ["submit", "--backend", "slurm", "--data-dir", "/d", "--output-dir", "/o", *args,
            "--dry-run"]


def local(*args: str) -> list[str]:
    return ["submit", "--backend", "local", "--data-dir", "{work}/data", "--output-dir",
            "{work}/out", *args, "--dry-run"]


def k8s(*args: str) -> list[str]:
    return ["submit", "--backend", "k8s", "--data-dir", "/d", "--output-dir", "/o", *args,
            "--dry-run"]


def from_file(text: str | bytes, *args: str) -> Case:
    """A job file case: `{work}/job.yaml` holds `text`."""
    return Case(["submit", "--file", "{work}/job.yaml", *args, "--dry-run"], 2, "", {"job.yaml": text})


def record(spec: dict | None = None, **fields: object) -> str:
    """A well-formed record.json for JOB, with some fields changed."""
    data = {"id": JOB, "backend": "local", "spec": spec or {"name": "rn"}, "job_dir": "",
            "output_dir": "/nonexistent/out", "backend_id": "1", "created": 1.0, "files": [],
            "last_state": "UNKNOWN", "extra": {}}
    return json.dumps({**data, **fields})


def sweep_case(*args: str) -> list[str]:
    """A local sweep (not a dry run: a bad one must still write nothing)."""
    return ["sweep", "--backend", "local", "--data-dir", "{work}/data", "--output-dir",
            "{work}/out", *args]


SWEEP_EXTRA = {"sweep": {"parameters": ["lr"], "max_parallel": 1, "mode": "bounded", "seed": 0,
                         "trials": [{"index": 0, "values": {"lr": "0.1"}},
                                    {"index": 1, "values": {"lr": "0.2"}}],
                         "trial_files": ["run.sh"]}}


CASES: dict[str, Case] = {
    # ---- submit flags: patterns are full matches (a trailing newline is not accepted) -------
    "name-newline": Case(slurm("--name", "job\n"), 2, "--name 'job\\n' is not a valid job name"),
    "name-upper": Case(slurm("--name", "Bad"), 2, "--name 'Bad' is not a valid job name"),
    "env-newline-key": Case(slurm("--env", "FOO\n=x"), 2, "--env 'FOO\\n' is not a valid"),
    "env-digit-key": Case(slurm("--env", "1X=y"), 2, "--env '1X' is not a valid"),
    "env-no-equals": Case(slurm("--env", "NOEQUALS"), 2, "'NOEQUALS' must look like KEY=VALUE"),
    "env-device-kind": Case(slurm("--gpus", "1", "--env", "RLAUNCH_DEVICE_KIND=cpu"), 2,
                            "--env RLAUNCH_DEVICE_KIND cannot be set: the launcher sets it"),
    "env-twice": Case(slurm("--env", "A=1", "--env", "A=2"), 2, "'A' is given twice"),
    "time-newline": Case(slurm("--time", "02:00:00\n"), 2, "--time '02:00:00\\n' is not a Slurm time"),
    "time-unicode-digits": Case(slurm("--time", "١٢"), 2, "--time '١٢' is not a Slurm time"),
    "time-shell": Case(slurm("--time", "$(reboot)"), 2, "--time '$(reboot)' is not a Slurm time"),
    "partition-newline": Case(slurm("--partition", "gpu\n"), 2, "--partition 'gpu\\n' has characters"),
    "partition-dash": Case(slurm("--partition", "-p"), 2, "--partition '-p' has characters"),
    "time-huge": Case(slurm("--time", "99999999999999999999"), 2, "is not a Slurm time"),
    "account-space": Case(slurm("--account", "a b"), 2, "--account 'a b' has characters"),
    "qos-newline": Case(slurm("--qos", "high\n"), 2, "--qos 'high\\n' has characters"),
    "constraint-semicolon": Case(slurm("--constraint", "a;b"), 2, "--constraint 'a;b' is not a Slurm"),
    "data-dir-newline": Case(slurm("--data-dir", "/d\n"), 2, "--data-dir '/d\\n' contains a newline"),
    "config-nul-free-newline": Case(slurm("--config", "/c\r.yaml"), 2, "--config '/c\\r.yaml' contains"),
    "image-newline": Case(k8s("--image", "img:1\n"), 2, "--image 'img:1\\n' is not an image reference"),
    "image-path-on-k8s": Case(k8s("--image", "/images/r.sif"), 2,
                              "--image '/images/r.sif' is a file path"),
    # ---- numbers: type first, then stated bounds ------------------------------------------
    "gpus-too-many": Case(slurm("--gpus", "99999"), 2, "--gpus 99999 must be 1-16"),
    "gpus-zero": Case(slurm("--gpus", "0"), 2, "--gpus 0 must be 1-16"),
    "gpus-not-int": Case(slurm("--gpus", "x"), 2, "'x' is not a valid integer"),
    "cpus-too-many": Case(slurm("--cpus", "5000"), 2, "--cpus 5000 must be 1-1024"),
    "ascend-three": Case(slurm("--ascend", "3"), 2, "--ascend 3 is not allowed"),
    "nodes-zero": Case(slurm("--nodes", "0"), 2, "--nodes 0 must be 1-100000"),
    "nodes-negative": Case(slurm("--nodes", "-1"), 2, "--nodes -1 must be 1-100000"),
    "nodes-float": Case(slurm("--nodes", "1.5"), 2, "'1.5' is not a valid integer"),
    "max-restarts-big": Case(slurm("--max-restarts", "1001"), 2, "--max-restarts 1001 must be 0-1000"),
    "master-port-low": Case(slurm("--master-port", "80"), 2, "--master-port 80 must be 1024-65535"),
    "two-device-kinds": Case(slurm("--gpus", "8", "--ascend", "8"), 2,
                             "--gpus and --ascend cannot be used together"),
    # ---- card ranges are parsed without building them -------------------------------------
    "ascend-devices-huge": Case(slurm("--ascend", "8", "--ascend-devices", "0-99999999999"), 2,
                                "card 99999999999 is out of range 0-15"),
    "ascend-devices-backwards": Case(slurm("--ascend", "2", "--ascend-devices", "7-6"), 2,
                                     "range 7-6 runs backwards"),
    "ascend-devices-word": Case(slurm("--ascend", "2", "--ascend-devices", "x"), 2,
                                "--ascend-devices 'x' is not a card list"),
    "ascend-devices-twice": Case(slurm("--ascend", "2", "--ascend-devices", "1,1"), 2,
                                 "names a card twice"),
    # ---- choices and backends ---------------------------------------------------------------
    "backend-unknown": Case(["submit", "--backend", "nope", "--dry-run"], 2, "'nope' is not one of"),
    "task-unknown": Case(slurm("--task", "fit"), 2, "'fit' is not one of"),
    "opt-unknown-slurm": Case(slurm("--opt", "nope=1"), 2, "--opt nope is not an option of the slurm"),
    "opt-no-equals": Case(slurm("--opt", "nope"), 2, "'nope' must look like KEY=VALUE"),
    "opt-namespace-newline": Case(k8s("--opt", "namespace=ns\n"), 2,
                                  "--opt namespace 'ns\\n' contains a newline"),
    "scheduler-arg-not-option": Case(slurm("--scheduler-arg", "script.sh"), 2,
                                     "must be an sbatch option starting with '-'"),
    # ---- --opt values are read as their declared type, never re-typed by YAML -------------
    **{f"opt-seconds-{name}": Case(slurm("--opt", f"signal_seconds={text}"), 2,
                                   f"--opt signal_seconds {text!r} is not a whole number")
       for name, text in (("octal", "017"), ("sexagesimal", "1:30"), ("fullwidth", "１２０"),
                          ("superscript", "²"), ("arabic", "٣"), ("underscore", "1_0"),
                          ("float", "1.5"), ("negative", "-5"), ("hex", "0x10"), ("exp", "1e3"),
                          ("empty", ""),
                          ("plus", "+60"), ("inf", "inf"), ("nan", "nan"))},
    "opt-seconds-space": Case(slurm("--opt", "signal_seconds= 60"), 2,
                              "--opt signal_seconds ' 60' is not a whole number"),
    "opt-seconds-zero": Case(slurm("--opt", "signal_seconds=0"), 2,
                             "--opt signal_seconds 0 is not an integer from 1 to 65535"),
    "opt-seconds-huge": Case(slurm("--opt", "signal_seconds=65536"), 2,
                             "--opt signal_seconds 65536 is not an integer from 1 to 65535"),
    "opt-cpus-per-gpu-zero": Case(slurm("--gpus", "1", "--opt", "cpus_per_gpu=0"), 2,
                                  "--opt cpus_per_gpu 0 is not an integer from 1 to 1024"),
    "opt-cpus-per-gpu-octal": Case(slurm("--gpus", "1", "--opt", "cpus_per_gpu=010"), 2,
                                   "--opt cpus_per_gpu '010' is not a whole number"),
    "opt-gres-space": Case(slurm("--ascend", "1", "--opt", "ascend_gres=n pu"), 2,
                           "--opt ascend_gres 'n pu' is not a plain gres name"),
    "opt-gpu-request-word": Case(slurm("--gpus", "1", "--opt", "gpu_request=gpus"), 2,
                                 "--opt gpu_request 'gpus' is not one of gpus-per-node, gres"),
    "opt-runtime-docker": Case(slurm("--image", "a:1", "--opt", "container_runtime=docker"), 2,
                               "--opt container_runtime 'docker' is not one of pyxis"),
    **{f"opt-hccn-{name}": Case(slurm("--ascend", "1", "--opt", f"hccn_conf={path}"), 2,
                                f"--opt hccn_conf {path!r} is not an absolute path without")
       for name, path in (("comma", "/etc/hccn.conf,/etc/shadow"), ("colon", "/etc/a:/b"),
                          ("relative", "hccn.conf"))},
    "opt-typo-suggests": Case(slurm("--opt", "signal_second=60"), 2,
                              "--opt signal_second is not an option of the slurm backend (did "
                              "you mean signal_seconds?"),
    "opt-local-has-none": Case(local("--opt", "x=1"), 2,
                               "--opt x is not an option of the local backend (it has none)"),
    "k8s-opt-typo-suggests": Case(k8s("--opt", "namspace=ml"), 2, "(did you mean namespace?"),
    "k8s-opt-chip-moved": Case(k8s("--ascend", "8", "--opt", "chip=910"), 2,
                               "--opt chip is not an option of the k8s backend"),
    "k8s-opt-bool-word": Case(k8s("--ascend", "8", "--opt", "ascend_driver_mounts=maybe"), 2,
                              "--opt ascend_driver_mounts 'maybe' is not true or false"),
    **{f"k8s-opt-seconds-{name}": Case(k8s("--opt", f"ttl_after_finished={text}"), 2,
                                       f"--opt ttl_after_finished {text!r} is not a whole number")
       for name, text in (("exp", "1e3"), ("negative", "-1"), ("arabic", "٣"),
                          ("octal", "0600"), ("float", "86400.0"))},
    "k8s-opt-seconds-huge": Case(k8s("--opt", "grace_seconds=100000001"), 2,
                                 "--opt grace_seconds 100000001 is not an integer from 0 to"),
    "k8s-opt-namespace-upper": Case(k8s("--opt", "namespace=ML"), 2,
                                    "--opt namespace 'ML' is not a Kubernetes namespace name"),
    "k8s-opt-workload-case": Case(k8s("--opt", "workload=JobSet"), 2,
                                  "--opt workload 'JobSet' is not one of acjob, vcjob, jobset"),
    "k8s-opt-node-selector": Case(k8s("--opt", "node_selector=novalue"), 2,
                                  "--opt node_selector 'novalue' is not comma-separated KEY=VALUE"),
    "k8s-opt-node-selector-value": Case(k8s("--opt", "node_selector=a=b c"), 2,
                                        "--opt node_selector 'a=b c' is not a node label"),
    "k8s-opt-toleration-effect": Case(k8s("--opt", "tolerations=a:Sometimes"), 2,
                                      "--opt tolerations 'a:Sometimes' is not KEY[=VALUE][:EFFECT]"),
    "k8s-opt-pull-secret": Case(k8s("--opt", "image_pull_secrets=ok,Not_Ok"), 2,
                                "--opt image_pull_secrets 'Not_Ok' is not a Kubernetes name"),
    **{f"k8s-opt-{key}-quantity": Case(k8s("--opt", f"{key}={value}"), 2,
                                       f"--opt {key} {value!r} is not a Kubernetes quantity")
       for key, value in (("cpu", "lots"), ("memory", "1.5.5Gi"), ("shm_size", "16 GB"))},
    # ---- options this job does not use: another device kind, workload or no image ---------
    "opt-hccn-on-gpu": Case(slurm("--gpus", "1", "--opt", "hccn_conf=/etc/hccn.conf"), 2,
                            "--opt hccn_conf is not used by gpu jobs (only by ascend jobs)"),
    "opt-gres-on-cpu": Case(slurm("--cpus", "2", "--opt", "ascend_gres=npu"), 2,
                            "--opt ascend_gres is not used by cpu jobs"),
    "opt-cpus-per-gpu-on-cpu": Case(slurm("--cpus", "2", "--opt", "cpus_per_gpu=4"), 2,
                                    "--opt cpus_per_gpu is not used by cpu jobs"),
    "opt-gpu-request-on-ascend": Case(slurm("--ascend", "1", "--opt", "gpu_request=gres"), 2,
                                      "--opt gpu_request is not used by ascend jobs"),
    "opt-runtime-without-image": Case(slurm("--opt", "container_runtime=pyxis"), 2,
                                      "--opt container_runtime is not used by this job: it only "
                                      "applies with --image"),
    "k8s-volcano-queue-jobset": Case(k8s("--gpus", "1", "--opt", "volcano_queue=q"), 2,
                                     "--opt volcano_queue is not used by this job: a jobset is "
                                     "not queued by Volcano"),
    "k8s-rank-table-on-gpu": Case(k8s("--gpus", "1", "--opt", "rank_table=/t.json"), 2,
                                  "--opt rank_table is not used by gpu jobs"),
    "k8s-device-ips-on-cpu": Case(k8s("--opt", "device_ips=/ips.yaml"), 2,
                                  "--opt device_ips is not used by cpu jobs"),
    "k8s-driver-mounts-on-gpu": Case(k8s("--gpus", "1", "--opt", "ascend_driver_mounts=true"), 2,
                                     "--opt ascend_driver_mounts is not used by gpu jobs"),
    "k8s-workload-acjob-gpu": Case(k8s("--gpus", "1", "--opt", "workload=acjob"), 2,
                                   "--opt workload acjob cannot run gpu jobs"),
    # ---- the Ascend chip is a job spec field --------------------------------------------------
    "ascend-chip-on-gpu": Case(slurm("--gpus", "1", "--ascend-chip", "910b"), 2,
                               "--ascend-chip is only for Ascend jobs"),
    "ascend-chip-unknown": Case(slurm("--ascend", "1", "--ascend-chip", "310"), 2,
                                "'310' is not one of '910', '910b'"),
    "ascend-16-on-910": Case(slurm("--ascend", "16", "--ascend-chip", "910"), 2,
                             "--ascend 16 is not allowed: devices per node must be 1, 2, 4 or 8 "
                             "on Ascend 910"),
    "ascend-upper-cards-on-910": Case(slurm("--ascend", "8", "--ascend-devices", "8-15"), 2,
                                      "--ascend-devices [8, 9, 10, 11, 12, 13, 14, 15] must be "
                                      "within 0-7 on Ascend 910"),
    "ascend-card-16-on-910b": Case(slurm("--ascend", "1", "--ascend-devices", "16",
                                         "--ascend-chip", "910b"), 2,
                                   "card 16 is out of range 0-15"),
    "file-ascend-chip-int": from_file("ascend_chip: 910\ndevice_kind: ascend\n"),
    "file-opt-namespace-hex": from_file("backend: k8s\ndata_dir: /d\noutput_dir: /o\n"
                                        "backend_options: {namespace: 0x1f}\n"),
    "file-opt-seconds-octal": from_file("backend: slurm\ndata_dir: /d\noutput_dir: /o\n"
                                        "backend_options: {signal_seconds: '017'}\n"),
    "file-opt-seconds-bool": from_file("backend: slurm\ndata_dir: /d\noutput_dir: /o\n"
                                       "backend_options: {signal_seconds: true}\n"),
    "file-opt-seconds-float": from_file("backend: slurm\ndata_dir: /d\noutput_dir: /o\n"
                                        "backend_options: {signal_seconds: 60.0}\n"),
    "file-opt-unknown": from_file("backend: slurm\ndata_dir: /d\noutput_dir: /o\n"
                                  "backend_options: {signal_secs: 60}\n"),
    "file-opt-pull-secrets-int": from_file("backend: k8s\ndata_dir: /d\noutput_dir: /o\n"
                                           "backend_options: "
                                           "{image_pull_secrets: [a, 5]}\n"),
    # ---- invisible characters and stray whitespace in names, paths and values --------------
    **{f"text-{where}-{name}": Case(slurm(flag, value), 2, says)
       for name, char in (("nel", "\x85"), ("line-separator", "\u2028"), ("rtl-override", "\u202e"),
                          ("bom", "\ufeff"), ("c1-csi", "\x9b"))
       for where, flag, value, says in (
           ("data-dir", "--data-dir", f"/d{char}", "contains a newline or control character"),
           ("output-dir", "--output-dir", f"/o{char}x", "contains a newline or control"),
           ("env-value", "--env", f"A=b{char}", "the value contains a newline or control"),
           ("opt-value", "--opt", f"container_runtime=pyxis{char}", "contains a newline or control"))},
    "text-data-dir-trailing-space": Case(slurm("--data-dir", "/d "), 2,
                                         "--data-dir '/d ' starts or ends with whitespace"),
    "text-output-dir-leading-space": Case(slurm("--output-dir", " /o"), 2,
                                          "--output-dir ' /o' starts or ends with whitespace"),
    "text-config-trailing-space": Case(slurm("--config", "/c.yaml "), 2,
                                       "--config '/c.yaml ' starts or ends with whitespace"),
    "text-env-trailing-space": Case(slurm("--env", "A=b "), 2,
                                    "--env A='b ': the value starts or ends with whitespace"),
    "text-opt-trailing-space": Case(k8s("--opt", "context=ctx "), 2,
                                    "--opt context 'ctx ' starts or ends with whitespace"),
    # ---- --set values are read as the config declares them, by launcher and trainer --------
    **{f"set-{key}-{name}": Case(slurm("--set", f"{key}={text}"), 2, f"{key}={text!r}: must be")
       for key, name, text in (
           ("num_classes", "octal", "010"), ("epochs", "arabic", "٣"), ("epochs", "fullwidth", "３"),
           ("epochs", "underscore", "1_0"), ("epochs", "space", " 3"), ("epochs", "float-text", "3.5"),
           ("batch_size", "plus", "+64"), ("seed", "hex", "0x10"),
           ("lr", "nan", "nan"), ("lr", "inf", "inf"), ("lr", "yaml-nan", ".nan"),
           ("lr", "neg-inf", "-inf"), ("lr", "overflow", "1e999"), ("lr", "arabic", "٠.١"),
           ("lr", "underscore", "0.0_1"), ("weight_decay", "nan", "NaN"),
           ("weight_decay", "inf", "Infinity"), ("loss_scale", "inf", "inf"),
           ("loss_scale", "nan", "nan"), ("momentum", "space", "0.9 "))},
    "set-net-name-unknown": Case(slurm("--set", "net_name=resnet50"), 2,
                                 "net_name='resnet50': allowed values are resnest14d"),
    "set-seed-negative": Case(slurm("--set", "seed=-1"), 2, "seed=-1: must be 0-4294967295"),
    "set-seed-huge": Case(slurm("--set", "seed=4294967296"), 2, "seed=4294967296: must be 0-"),
    "config-file-nan": Case(slurm("--config", "{work}/c.yaml"), 2,
                            "lr=nan: must be a finite number", {"c.yaml": "lr: .nan\n"}),
    "config-file-alias": Case(slurm("--config", "{work}/c.yaml"), 2,
                              "aliases (*name) are not allowed",
                              {"c.yaml": "lr_epochs: &a 30,60\nlr_gamma: *a\n"}),
    "config-file-deep": Case(slurm("--config", "{work}/c.yaml"), 2, "nested deeper than 20",
                             {"c.yaml": "lr_epochs: " + "[" * 30 + "]" * 30 + "\n"}),
    "config-file-seed": Case(slurm("--config", "{work}/c.yaml"), 2, "seed=-5: must be 0-",
                             {"c.yaml": "seed: -5\n"}),
    # ---- contradictions caught at submit ------------------------------------------------------
    "gpus-with-cpu-target": Case(slurm("--gpus", "2", "--set", "device_target=CPU"), 2,
                                 "device_target=CPU contradicts the job's device kind gpu"),
    "cpus-with-gpu-target": Case(slurm("--cpus", "2", "--set", "device_target=gpu"), 2,
                                 "device_target=GPU contradicts the job's device kind cpu"),
    "ascend-with-cpu-target-file": Case(slurm("--ascend", "1", "--config", "{work}/c.yaml"), 2,
                                        "device_target=CPU contradicts the job's device kind "
                                        "ascend", {"c.yaml": "device_target: CPU\n"}),
    "k8s-gpus-with-ascend-target": Case(k8s("--gpus", "1", "--set", "device_target=Ascend"), 2,
                                        "device_target=Ascend contradicts"),
    "time-inside-signal-window": Case(slurm("--time", "2"), 2,
                                      "--time 2 (120 s) is not longer than --opt signal_seconds"),
    "time-inside-custom-window": Case(slurm("--time", "00:05:00", "--opt", "signal_seconds=600"),
                                      2, "--time 00:05:00 (300 s) is not longer than --opt "
                                      "signal_seconds 600"),
    "k8s-time-inside-grace": Case(k8s("--time", "1"), 2,
                                  "--time 1 (60 s) is not longer than --opt grace_seconds 120"),
    "eval-no-checkpoint": Case(slurm("--task", "eval"), 2, "an eval job needs what to eval: give "
                               "--arg --checkpoint=PATH or --arg --model=PATH"),
    "export-no-checkpoint": Case(["submit", "--backend", "slurm", "--task", "export", "--gpus",
                                  "1", "--dry-run"], 2, "an export job needs what to export"),
    **{f"arg-smuggles-{name}": Case(slurm("--arg", arg), 2, f"--arg {arg!r} would set {flag}")
       for name, arg, flag in (("set", "--set=lr=nan", "--set"), ("set-prefix", "--se=lr=1", "--set"),
                               ("output-dir", "--output-dir=/elsewhere", "--output-dir"),
                               ("output-prefix", "--out=/x", "--output-dir"),
                               ("data-dir", "--data-dir", "--data-dir"),
                               ("config", "--config=/c.yaml", "--config"),
                               ("config-prefix", "--conf", "--config"))},
    # ---- flags a backend does not use are errors naming it ----------------------------------
    "local-image": Case(local("--image", "img:1"), 2, "--image is not used by the local backend"),
    "local-partition": Case(local("--partition", "gpu"), 2, "--partition is not used by the local"),
    "local-account": Case(local("--account", "a"), 2, "--account is not used by the local backend"),
    "local-qos": Case(local("--qos", "q"), 2, "--qos is not used by the local backend"),
    "local-constraint": Case(local("--constraint", "a100"), 2, "--constraint is not used by the local"),
    "local-scheduler-arg": Case(local("--scheduler-arg", "--exclusive"), 2,
                                "--scheduler-arg is not used by the local backend"),
    "local-time": Case(local("--time", "10"), 2, "--time is not used by the local backend"),
    "local-gpus": Case(local("--gpus", "1"), 2, "--gpus 1: the local backend is CPU-only"),
    "local-ascend": Case(local("--ascend", "1"), 2, "--ascend 1: the local backend is CPU-only"),
    "local-nodes": Case(local("--nodes", "2"), 2, "--nodes 2: the local backend runs on this one"),
    "local-data-missing": Case(local("--data-dir", "/nonexistent/x"), 2,
                               "--data-dir '/nonexistent/x' does not exist on this machine"),
    **{f"k8s-{flag}": Case(k8s(f"--{flag}", value), 2, f"--{flag} is not used by the k8s backend")
       for flag, value in (("partition", "gpu"), ("account", "a"), ("qos", "q"),
                           ("constraint", "a100"), ("scheduler-arg", "--exclusive"))},
    # ---- --set: the training config's own rules, at submit, on every backend ----------------
    "set-typo-dry-run": Case(slurm("--set", "epochz=3"), 2, "unknown config key 'epochz'"),
    "set-typo-submit": Case(slurm("--set", "epochz=3")[:-1], 2, "unknown config key 'epochz'"),
    "set-negative-lr": Case(slurm("--set", "lr=-1"), 2, "--set: lr=-1.0: must be > 0"),
    "set-negative-lr-submit": Case(slurm("--set", "lr=-1")[:-1], 2, "--set: lr=-1.0: must be > 0"),
    "set-lr-word": Case(slurm("--set", "lr=fast"), 2, "lr='fast': must be a finite number"),
    "set-no-value": Case(slurm("--set", "novalue"), 2, "--set 'novalue' must look like key=value"),
    "set-local": Case(local("--set", "epochz=3"), 2, "unknown config key 'epochz'"),
    "set-k8s": Case(k8s("--set", "epochz=3"), 2, "unknown config key 'epochz'"),
    "config-file-bad-value": Case(slurm("--config", "{work}/train.yaml"), 2,
                                  "lr=-3.0: must be > 0", {"train.yaml": "lr: -3\n"}),
    # ---- job files: unreadable, non-UTF-8, not a mapping, wrong types -----------------------
    "file-missing": Case(["submit", "--file", "{work}/nope.yaml", "--dry-run"], 2,
                         "job file '{work}/nope.yaml' cannot be read: No such file"),
    "file-not-utf8": from_file(b"name: caf\xe9\n"),
    "file-a-device": Case(["submit", "--file", "/dev/zero", "--dry-run"], 2,
                          "job file '/dev/zero' is a device, not a regular file"),
    "file-a-fifo": Case(["submit", "--file", "{work}/job.fifo", "--dry-run"], 2,
                        "job file '{work}/job.fifo' is a FIFO, not a regular file"),
    "file-alias-bomb": from_file("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n"),
    "file-deep": from_file("env: " + "{a: " * 25 + "1" + "}" * 25 + "\n"),
    "file-a-list": from_file("- name\n- nodes\n"),
    "file-bad-yaml": from_file("name: [unclosed\n"),
    "file-python-tag": from_file("name: !!python/object/apply:os.system [id]\n"),
    "file-data-dir-int": from_file("data_dir: 123\n"),
    "file-partition-int": from_file("partition: 5\n"),
    "file-device-ids-int": from_file("device_kind: ascend\ndevice_ids: 5\n"),
    "file-nodes-true": from_file("nodes: true\n"),
    "file-env-null": from_file("env: {FOO: null}\n"),
    "file-env-int": from_file("env: {OMP_NUM_THREADS: 4}\n"),
    "file-name-null": from_file("name: null\n"),
    "file-config-list": from_file("config: [a.yaml, b.yaml]\n"),
    "file-overrides-string": from_file("overrides: epochs=3\n"),
    "file-args-int": from_file("args: [--batch-size, 4]\n"),
    "file-max-restarts-float": from_file("max_restarts: 1.5\n"),
    "file-unknown-field": from_file("nodez: 2\n"),
    "file-job-id": from_file("job_id: mine-1\n"),
    "file-empty-config": from_file("config: ''\nbackend: slurm\ndata_dir: /d\noutput_dir: /o\n"),
    "file-nodes-zero": from_file("nodes: 0\nbackend: slurm\ndata_dir: /d\noutput_dir: /o\n"),
    "file-time-newline": from_file("time_limit: \"10\\n\"\nbackend: slurm\ndata_dir: /d\n"
                                   "output_dir: /o\n"),
    # ---- the job store: damaged records are a clear state ----------------------------------
    "status-truncated": Case(["status", JOB], 1, "record.json is damaged (not valid JSON",
                             record='{"id": "rn-abc1'),
    "logs-truncated": Case(["logs", JOB], 1, "is damaged", record='{"id": "rn-'),
    "cancel-truncated": Case(["cancel", JOB], 1, "is damaged", record=""),
    "gather-truncated": Case(["gather", JOB, "--dest", "{work}/got"], 1, "is damaged",
                             record='{"id"'),
    "status-prefix-truncated": Case(["status", "rn-abc"], 1, "is damaged", record="{"),
    "status-not-utf8": Case(["status", JOB], 1, "is damaged (not UTF-8 text)", record=b"\xff\xfe"),
    "status-json-list": Case(["status", JOB], 1, "is damaged (not a JSON object)", record="[]"),
    "status-missing-fields": Case(["status", JOB], 1, "is damaged (missing backend, spec",
                                  record='{"id": "rn-abc123"}'),
    "status-wrong-type": Case(["status", JOB], 1, "wrong type of created",
                              record=record(created="yesterday")),
    "status-bad-spec": Case(["status", JOB], 1, "its job spec: nodes must be an integer",
                            record=record(spec={"nodes": "many"})),
    "status-other-id": Case(["status", JOB], 1, "its id 'rn-other' is not its folder's name",
                            record=record(id="rn-other")),
    "status-unknown-backend": Case(["status", JOB], 1, "backend 'mainframe' is not one of",
                                   record=record(backend="mainframe")),
    "status-unknown-job": Case(["status", "nope-1"], 2, "job 'nope-1' is not in the job store"),
    "gather-unknown-job": Case(["gather", "nope-1", "--dest", "{work}/got"], 2,
                               "job 'nope-1' is not in the job store"),
    "gather-no-outputs": Case(["gather", JOB, "--dest", "{work}/got"], 1,
                              "output dir '/nonexistent/out' of job rn-abc123 does not exist",
                              record=record()),
    # ---- a record never makes us act on something that is not ours ---------------------------
    "status-job-dir-elsewhere": Case(["status", JOB], 1, "its job_dir '/etc' is not its own folder",
                                     record=record(job_dir="/etc")),
    "cancel-job-dir-elsewhere": Case(["cancel", JOB], 1, "its job_dir '/' is not its own folder",
                                     record=record(job_dir="/")),
    "status-record-nan": Case(["status", JOB], 1, "is damaged (not valid JSON",
                              record=record().replace('"created": 1.0', '"created": NaN')),
    "status-record-huge": Case(["status", JOB], 1, "is damaged (unreadable: ",
                               record=record(files=["x" * (1 << 20)])),
    "status-record-fifo": Case(["status", JOB], 1, "record.json' is a FIFO, not a regular file",
                               job_files={"record.json": None}),
    **{f"cancel-slurm-id-{name}": Case(["cancel", JOB], 1,
                                       f"its backend id {backend_id!r} is not a Slurm job id",
                                       record=record(backend="slurm", backend_id=backend_id))
       for name, backend_id in (("injection", "1; touch PWNED"), ("option", "--help"),
                                ("list", "1,2"), ("empty", ""), ("zero", "0"), ("user", "-u"),
                                ("newline", "12\n13"), ("arabic", "١٢"))},
    "status-slurm-id-option": Case(["status", JOB], 1, "its backend id '--me' is not a Slurm job",
                                   record=record(backend="slurm", backend_id="--me")),
    **{f"cancel-local-pid-{name}": Case(["cancel", JOB], 1, says, record=record(),
                                        job_files={"pid": text})
       for name, text, says in (
           ("init", "1 12345", "pid file"), ("no-start-time", "4242", "is damaged"),
           ("words", "abc def", "is not 'PID START_TIME'"), ("zero", "0 5", "is damaged"),
           ("negative", "-1 5", "is damaged"), ("arabic", "٤٢ ٥", "is damaged"),
           ("fifo", None, "is a FIFO, not a regular file"))},
    # ---- gather --dest: refused before anything is copied -------------------------------------
    "gather-dest-outputs-is-a-file": Case(["gather", JOB, "--dest", "{work}/got"], 2,
                                          "holds 'outputs' of the wrong kind",
                                          {"got/outputs": "x"}, record=record()),
    "gather-dest-logs-is-a-file": Case(["gather", JOB, "--dest", "{work}/got"], 2,
                                       "holds 'logs' of the wrong kind", {"got/logs": "x"},
                                       record=record()),
    "gather-dest-summary-is-a-folder": Case(["gather", JOB, "--dest", "{work}/got"], 2,
                                            "holds 'summary.json' of the wrong kind",
                                            {"got/summary.json/x": "y"}, record=record()),
    "gather-dest-under-a-file": Case(["gather", JOB, "--dest", "{work}/f/sub"], 2,
                                     "'{work}/f' is a file, not a folder", {"f": "x"},
                                     record=record()),
    # ---- rank tables: CLI flags ---------------------------------------------------------------
    "ranktable-devices-huge": Case(["ranktable", "--hccn-dir", "{work}", "--devices",
                                    "0-99999999999"], 2, "card 99999999999 is out of range 0-7"),
    "ranktable-devices-eight": Case(["ranktable", "--hccn-dir", "{work}", "--devices", "8"], 2,
                                    "card 8 is out of range 0-7"),
    "ranktable-server-twice": Case(["ranktable", "--device-ips", "{work}/ips.json", "--server",
                                    "10.0.0.1", "--server", "10.0.0.1"], 2,
                                   "'10.0.0.1' is given twice",
                                   {"ips.json": '{"10.0.0.1": ["1.1.1.1"]}'}),
    "ranktable-server-newline": Case(["ranktable", "--device-ips", "{work}/0.conf", "--server",
                                      "10.0.0.1\n"], 2, "'10.0.0.1\\n' is not an IP address",
                                     {"0.conf": "address_0=10.1.1.1\n"}),
    "ranktable-server-and-hccn-dir": Case(["ranktable", "--hccn-dir", "{work}", "--server",
                                           "10.0.0.1"], 2, "--server is not used with --hccn-dir"),
    "ranktable-card-not-int": Case(["ranktable", "--device-ips", "{work}/ips.json", "--server",
                                    "10.0.0.1"], 2, "'x' is not a card number",
                                   {"ips.json": '{"10.0.0.1": {"x": "1.1.1.1"}}'}),
    "ranktable-hccn-not-utf8": Case(["ranktable", "--hccn-dir", "{work}/hccn"], 2,
                                    "device IP file '{work}/hccn/10.0.0.1.conf' is not UTF-8 text",
                                    {"hccn/10.0.0.1.conf": b"address_0=\xff\n"}),
    "ranktable-no-input": Case(["ranktable"], 2, "give --device-ips FILE"),
    "ranktable-check-fifo": Case(["ranktable", "--check", "{work}/job.fifo"], 1,
                                 "rank table '{work}/job.fifo' is a FIFO, not a regular file"),
    "ranktable-device-ips-fifo": Case(["ranktable", "--device-ips", "{work}/job.fifo", "--server",
                                       "10.0.0.1"], 2, "device IP file '{work}/job.fifo' is a FIFO"),
    "ranktable-device-ips-alias": Case(["ranktable", "--device-ips", "{work}/ips.yaml", "--server",
                                        "10.0.0.1"], 2, "is neither hccn.conf nor YAML/JSON",
                                       {"ips.yaml": "a: &x [1.1.1.1]\n10.0.0.1: *x\n"}),
    "k8s-rank-table-fifo": Case(k8s("--ascend", "8", "--opt", "rank_table={work}/job.fifo"), 2,
                                "rank table '{work}/job.fifo' is a FIFO, not a regular file"),
    "k8s-device-ips-fifo": Case(k8s("--ascend", "8", "--opt", "device_ips={work}/job.fifo"), 2,
                                "device IP file '{work}/job.fifo' is a FIFO, not a regular file"),
    "ranktable-card-16-910b": Case(["ranktable", "--hccn-dir", "{work}", "--ascend-chip", "910b",
                                    "--devices", "0-16"], 2, "card 16 is out of range 0-15"),
    "ranktable-ring-910": Case(["ranktable", "--hccn-dir", "{work}", "--devices", "2-5"], 2,
                               "a 4-card Ascend 910 job must sit within devices 0-3 or 4-7"),
    "ranktable-three-cards": Case(["ranktable", "--hccn-dir", "{work}", "--devices", "0-2"], 2,
                                  "a count of 3 is not allowed"),
    "ranktable-chip-unknown": Case(["ranktable", "--hccn-dir", "{work}", "--ascend-chip", "310"],
                                   2, "'310' is not one of '910', '910b'"),
    "ranktable-empty-hccn-dir": Case(["ranktable", "--hccn-dir", "{work}"], 2,
                                     "holds no <server IP>.conf files"),
    "ranktable-check-not-json": Case(["ranktable", "--check", "{work}/t.json"], 1,
                                     "is not a JSON file", {"t.json": "{"}),
    "ranktable-check-not-utf8": Case(["ranktable", "--check", "{work}/t.json"], 1,
                                     "is not a JSON file", {"t.json": b"\xff"}),
    "ranktable-check-missing": Case(["ranktable", "--check", "{work}/none.json"], 1,
                                    "cannot be read: No such file or directory"),
    "ranktable-check-list": Case(["ranktable", "--check", "{work}/t.json"], 1,
                                 "rank table must be a JSON object", {"t.json": "[]"}),
    "ranktable-check-and-output": Case(["ranktable", "--check", "{work}/t.json", "-o",
                                        "{work}/x.json"], 2, "--check validates a rank table",
                                       {"t.json": "{}"}),
    # ---- build flags -----------------------------------------------------------------------
    "build-tag-newline": Case(["build", "--target", "cpu", "--builder", "buildah", "--tag",
                               "rlaunch-cpu:1\n", "--dry-run"], 2,
                              "--tag 'rlaunch-cpu:1\\n' is not an image reference"),
    "build-tag-bad": Case(["build", "--target", "cpu", "--builder", "buildah", "--tag", "Bad Tag!",
                           "--dry-run"], 2, "'Bad Tag!' is not an image reference"),
    "build-base-image-newline": Case(["build", "--target", "cpu", "--builder", "buildah",
                                      "--base-image", "debian\n", "--dry-run"], 2,
                                     "'debian\\n' is not an image reference"),
    "build-target": Case(["build", "--target", "tpu", "--dry-run"], 2, "'tpu' is not one of"),
    "build-local-base-gpu": Case(["build", "--target", "gpu", "--builder", "buildah",
                                  "--local-base", "--dry-run"], 2, "fits only --target cpu"),
    "build-push-no-registry": Case(["build", "--target", "cpu", "--builder", "buildah", "--tag",
                                    "rlaunch-cpu:x", "--push", "--dry-run"], 2,
                                   "--push needs a tag that names a registry"),
    "build-no-context": Case(["build", "--target", "cpu", "--builder", "buildah", "--context",
                              "{work}/none", "--dry-run"], 2, "no Dockerfile for target 'cpu'"),
    # ---- sweeps: the space, every trial's values, --trial --------------------------------
    "sweep-no-space": Case(sweep_case(), 2, "a sweep needs --grid KEY=V1,V2 or --random N"),
    "sweep-grid-negative-lr": Case(sweep_case("--grid", "lr=0.1,-1"), 2,
                                   "trial 1 (lr=-1): lr=-1.0: must be > 0"),
    "sweep-grid-unknown-key": Case(sweep_case("--grid", "lrr=0.1"), 2,
                                   "trial 0 (lrr=0.1): unknown config key 'lrr'"),
    "sweep-grid-not-a-number": Case(sweep_case("--grid", "batch_size=64,big"), 2,
                                    "trial 1 (batch_size=big): batch_size='big': must be an "
                                    "integer"),
    "sweep-grid-empty-value": Case(sweep_case("--grid", "lr=0.1,,0.2"), 2,
                                   "--grid 'lr=0.1,,0.2': give one or more values"),
    "sweep-grid-newline": Case(sweep_case("--grid", "net_name=a\nb"), 2,
                               "value 'a\\nb' cannot be a config value"),
    "sweep-grid-no-key": Case(sweep_case("--grid", "0.1,0.2"), 2,
                              "--grid '0.1,0.2' must look like KEY=VALUES"),
    "sweep-range-distribution": Case(sweep_case("--range", "lr=normal:0:1", "--random", "2"),
                                     2, "'normal' is not a distribution (allowed: uniform"),
    "sweep-range-log-zero": Case(sweep_case("--range", "lr=loguniform:0:1", "--random", "2"),
                                 2, "loguniform bounds must be > 0"),
    "sweep-range-reversed": Case(sweep_case("--range", "lr=uniform:0.5:0.1", "--random", "2"),
                                 2, "LOW 0.5 is above HIGH 0.1"),
    "sweep-range-no-random": Case(sweep_case("--range", "lr=uniform:0:1"), 2,
                                  "--range needs --random N"),
    "sweep-random-zero": Case(sweep_case("--range", "lr=uniform:0:1", "--random", "0"), 2,
                              "'--random': 0 is not in the range 1<=x<=1000"),
    "sweep-max-parallel-zero": Case(sweep_case("--grid", "lr=0.1", "--max-parallel", "0"), 2,
                                    "'--max-parallel': 0 is not in the range 1<=x<=1000"),
    "sweep-too-many-trials": Case(sweep_case(
        "--grid", "lr=" + ",".join(f"0.{i:03d}" for i in range(1, 101)),
        "--grid", "batch_size=" + ",".join(str(i) for i in range(1, 12))), 2,
        "the space has 1100 trials; at most 1000 per sweep"),
    "sweep-set-and-grid": Case(sweep_case("--grid", "lr=0.1", "--set", "lr=0.2"), 2,
                               "lr is swept and also fixed with --set lr="),
    "sweep-not-train": Case(sweep_case("--grid", "lr=0.1", "--task", "eval"), 2,
                            "--task eval: a sweep trains (--task train)"),
    "sweep-slurm-bad-trial": Case(["sweep", "--backend", "slurm", "--data-dir", "/d",
                                   "--output-dir", "/o", "--grid", "epochs=2,0"], 2,
                                  "trial 1 (epochs=0): epochs=0"),
    "sweep-master-port": Case(sweep_case("--grid", "lr=0.1,0.2", "--master-port", "29500"), 2,
                              "--master-port 29500: trials that run side by side need their "
                              "own ports"),
    "cancel-trial-not-a-sweep": Case(["cancel", JOB, "--trial", "1"], 2,
                                     "--trial 1: job rn-abc123 is not a sweep", record=record()),
    "logs-trial-beyond-the-sweep": Case(["logs", JOB, "--trial", "5"], 2,
                                        "sweep rn-abc123 has 2 trials (0-1); there is no trial 5",
                                        record=record(extra=SWEEP_EXTRA)),
    "logs-sweep-without-trial": Case(["logs", JOB], 2,
                                     "job rn-abc123 is a sweep: name one of its trials",
                                     record=record(extra=SWEEP_EXTRA)),
    "status-sweep-damaged": Case(["status", JOB], 1, "is damaged (its sweep has no list of trials)",
                                 record=record(extra={"sweep": {**SWEEP_EXTRA["sweep"],
                                                                "trials": "x"}})),
}

FILE_MESSAGES = {
    "file-not-utf8": "is not UTF-8 text (byte 0xe9 at offset 9)",
    "file-alias-bomb": "is not valid YAML at line 2, column 8: aliases (*name) are not allowed",
    "file-deep": "nested deeper than 20 levels",
    "file-a-list": "must be a mapping of job spec fields, not a list",
    "file-bad-yaml": "is not valid YAML at line 2, column 1",
    "file-python-tag": "is not valid YAML at line 1, column 7",
    "file-data-dir-int": "job.yaml: data_dir must be a string, not an integer (123)",
    "file-partition-int": "job.yaml: partition must be a string, not an integer (5)",
    "file-device-ids-int": "job.yaml: device_ids must be a list of integers, not an "
                           "integer (5)",
    "file-nodes-true": "job.yaml: nodes must be an integer, not a boolean (True)",
    "file-env-null": "job.yaml: env FOO must be a string, not null",
    "file-env-int": "job.yaml: env OMP_NUM_THREADS must be a string, not an integer (4)",
    "file-name-null": "job.yaml: name must be a string, not null",
    "file-config-list": "job.yaml: config must be a string, not a list",
    "file-overrides-string": "job.yaml: overrides must be a list of strings, not a string",
    "file-args-int": "job.yaml: args[1] must be a string, not an integer (4)",
    "file-max-restarts-float": "job.yaml: max_restarts must be an integer, not a number (1.5)",
    "file-unknown-field": "unknown job spec field 'nodez'",
    "file-job-id": "job.yaml: job_id is chosen by rlaunch submit",
    "file-empty-config": "job.yaml: config is empty",
    "file-nodes-zero": "job.yaml: nodes 0 must be 1-100000",
    "file-time-newline": "job.yaml: time_limit '10\\n' is not a Slurm time",
    "file-ascend-chip-int": "job.yaml: ascend_chip must be a string, not an integer (910) "
                            "(quote it in YAML)",
    "file-opt-namespace-hex": "job.yaml: backend_options.namespace must be a string, not an "
                              "integer (31) (quote it in YAML)",
    "file-opt-seconds-octal": "job.yaml: backend_options.signal_seconds '017' is not a whole "
                              "number",
    "file-opt-seconds-bool": "job.yaml: backend_options.signal_seconds must be an integer, not a "
                             "boolean (True)",
    "file-opt-seconds-float": "job.yaml: backend_options.signal_seconds must be an integer, not "
                              "a number (60.0)",
    "file-opt-unknown": "job.yaml: backend_options.signal_secs is not an option of the slurm "
                        "backend (did you mean signal_seconds?",
    "file-opt-pull-secrets-int": "job.yaml: backend_options.image_pull_secrets[1] must be a "
                                 "string, not an integer (5)",
}
for _name, _says in FILE_MESSAGES.items():
    CASES[_name].says = _says


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under the roots with its size and modification time."""
    seen = {}
    for root in roots:
        if root.exists():
            seen[str(root)] = (0, root.stat().st_mtime_ns)
            for path in root.rglob("*"):
                stat = path.lstat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return seen


def error_lines(output: str) -> list[str]:
    """What the user is told, without click's usage header."""
    return [line for line in output.splitlines()
            if line.strip() and not line.startswith(("Usage: ", "Try '"))]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_writes_nothing(name: str, tmp_path: Path, state_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    case = CASES[name]
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    os.mkfifo(work / "job.fifo")  # a reader that opens it blocking would hang the test
    for rel, content in case.files.items():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)
    if case.record is not None or case.job_files:
        job_dir = state_dir / "jobs" / JOB
        job_dir.mkdir(parents=True)
    if case.record is not None:
        content = case.record.replace('"job_dir": ""', f'"job_dir": "{job_dir}"') \
            if isinstance(case.record, str) else case.record
        path = job_dir / "record.json"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    for rel, text in case.job_files.items():
        os.mkfifo(job_dir / rel) if text is None else (job_dir / rel).write_text(text)
    monkeypatch.chdir(work)
    argv = [a.replace("{work}", str(work)) for a in case.argv]
    before = snapshot(state_dir, work)

    result = CliRunner().invoke(cli, argv)

    assert isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    assert result.exit_code == case.code, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    assert case.says.replace("{work}", str(work)) in lines[0], result.output
    assert snapshot(state_dir, work) == before
    assert not state_dir.exists() or case.record is not None or case.job_files


def test_enough_cases_across_every_command() -> None:
    commands = {c.argv[0] for c in CASES.values()}
    assert len(CASES) >= 260 and len(IN_JOB_CASES) >= 30
    assert commands >= {"submit", "status", "logs", "cancel", "gather", "ranktable", "build"}


def test_list_shows_a_damaged_record(state_dir: Path) -> None:
    job_dir = state_dir / "jobs" / JOB
    job_dir.mkdir(parents=True)
    (job_dir / "record.json").write_text('{"id": "rn-')
    result = CliRunner().invoke(cli, ["list", "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert entry["id"] == JOB and "not valid JSON" in entry["damaged"]
    table = CliRunner().invoke(cli, ["list"])
    assert table.exit_code == 0 and "DAMAGED" in table.output


@pytest.mark.parametrize("argv", [
    slurm("--name", "job\n"),
    ["submit", "--file", "{work}/job.yaml", "--dry-run"],
    ["status", JOB],
])
def test_a_real_process_prints_no_traceback(argv: list[str], tmp_path: Path) -> None:
    """The same through the installed `rlaunch` (exception hooks, stderr, exit status)."""
    state = tmp_path / "state"
    (state / "jobs" / JOB).mkdir(parents=True)
    (state / "jobs" / JOB / "record.json").write_text('{"id": ')
    (tmp_path / "job.yaml").write_bytes(b"nodes: \xff\n")
    done = rlaunch(*[a.replace("{work}", str(tmp_path)) for a in argv], check=False,
                   env={"RLAUNCH_STATE_DIR": str(state), "PYTHONWARNINGS": "ignore"})
    assert done.returncode in (1, 2), done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert len(error_lines(done.stderr)) == 1, done.stderr
    assert os.listdir(state / "jobs") == [JOB]


def test_failed_submit_leaves_no_folder(runner: CliRunner, state_dir: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch missing from PATH: the submit fails at the side effect, after the job folder was
    made; the folder (and the store folders it created) must be gone again."""
    empty = tmp_path / "no-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = runner.invoke(cli, slurm()[:-1])
    assert result.exit_code == 1, result.output
    assert error_lines(result.output) == ["Error: sbatch is not installed or not on PATH"]
    assert not state_dir.exists()


def test_logs_rank_beyond_the_job(runner: CliRunner, state_dir: Path) -> None:
    job_dir = state_dir / "jobs" / JOB
    job_dir.mkdir(parents=True)
    (job_dir / "record.json").write_text(record(spec={"devices_per_node": 2}).replace(
        '"job_dir": ""', f'"job_dir": "{job_dir}"'))
    result = runner.invoke(cli, ["logs", JOB, "--rank", "2"])
    assert result.exit_code == 2
    assert "Invalid value for --rank: 2: job rn-abc123 has 2 ranks (0-1)" in result.output


# ---- the in-job entry points: the same values refused with the same words -------------------


@dataclass
class InJobCase:
    """A bad argv for `python -m resnest.<module>` (`{work}` = a folder with train/ and val/)."""

    module: str
    argv: list[str]
    says: str
    files: dict[str, str] = field(default_factory=dict)


def train(*args: str) -> list[str]:
    return ["--data-dir", "{work}", "--output-dir", "{work}/out", *args]


IN_JOB_CASES: dict[str, InJobCase] = {
    **{f"{module}-set-{key}-{name}": InJobCase(module, argv + ["--set", f"{key}={text}"],
                                               f"{key}={text!r}: must be")
       for module, argv in (("train", train()), ("eval", ["--data-dir", "{work}", "--checkpoint",
                                                           "{work}/x.ckpt"]),
                            ("export", ["--checkpoint", "{work}/x.ckpt", "--format", "ONNX",
                                        "--out", "{work}/m"]))
       for key, name, text in (("num_classes", "octal", "010"), ("lr", "nan", "nan"),
                               ("weight_decay", "inf", "inf"), ("loss_scale", "nan", ".nan"),
                               ("epochs", "arabic", "٣"))},
    "train-seed-negative": InJobCase("train", train("--set", "seed=-1"),
                                     "seed=-1: must be 0-4294967295"),
    "train-net-name": InJobCase("train", train("--set", "net_name=resnet50"),
                                "net_name='resnet50': allowed values are resnest14d"),
    "train-config-fifo": InJobCase("train", train("--config", "{work}/c.fifo"),
                                   "config file '{work}/c.fifo' is a FIFO, not a regular file"),
    "train-config-dir": InJobCase("train", train("--config", "{work}/train"),
                                  "config file '{work}/train' is a directory"),
    "train-config-alias": InJobCase("train", train("--config", "{work}/c.yaml"),
                                    "aliases (*name) are not allowed",
                                    {"c.yaml": "lr_epochs: &a 30\nlr_gamma: *a\n"}),
    "eval-seed-huge": InJobCase("eval", ["--data-dir", "{work}", "--checkpoint", "{work}/x.ckpt",
                                         "--set", "seed=4294967296"], "seed=4294967296: must be"),
    **{f"export-{flag[2:]}-{name}": InJobCase(
        "export", ["--checkpoint", "{work}/x.ckpt", "--format", "ONNX", "--out", "{work}/m",
                   flag, text], f"{text!r} is not an integer (ASCII digits, no leading zero)")
       for flag, name, text in (("--batch-size", "hex", "0x1"), ("--batch-size", "octal", "010"),
                                ("--image-size", "arabic", "٢٢٤"), ("--image-size", "float", "224.0"))},
    **{f"serve-{flag[2:]}-{name}": InJobCase(
        "serve", ["--model", "{work}/m.onnx", flag, text],
        f"{text!r} is not a finite number (ASCII digits")
       for flag, name, text in (("--max-body-mb", "nan", "nan"), ("--max-body-mb", "inf", "inf"),
                                ("--max-body-mb", "overflow", "1e999"),
                                ("--max-queue-delay-ms", "nan", "NaN"),
                                ("--shutdown-timeout", "inf", "Infinity"),
                                ("--max-body-mb", "arabic", "١٦"))},
    **{f"serve-{flag[2:]}-{name}": InJobCase(
        "serve", ["--model", "{work}/m.onnx", flag, text],
        f"{text!r} is not an integer (ASCII digits, no leading zero)")
       for flag, name, text in (("--port", "arabic", "٨٠٠٠"), ("--threads", "octal", "010"),
                                ("--max-batch-size", "underscore", "1_0"),
                                ("--device-id", "fullwidth", "０"))},
}


@pytest.mark.parametrize("name", list(IN_JOB_CASES))
def test_in_job_bad_input_is_one_line_and_writes_nothing(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib

    case = IN_JOB_CASES[name]
    work = tmp_path / "work"
    for split in ("train", "val"):
        (work / split / "c0").mkdir(parents=True)
    os.mkfifo(work / "c.fifo")
    for rel, content in case.files.items():
        (work / rel).write_text(content)
    argv = [a.replace("{work}", str(work)) for a in case.argv]
    before = snapshot(work)
    entry = importlib.import_module(f"resnest.{case.module}" + (".cli" if case.module == "serve"
                                                                 else ""))
    try:
        code = entry.main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    # argparse may wrap its usage over several lines first; the error is the last line, alone.
    assert lines[-1].startswith(("error:", f"python -m resnest.{case.module}: error:")), err
    assert sum("error" in line for line in lines) == 1, err
    assert case.says.replace("{work}", str(work)) in lines[-1], err
    assert snapshot(work) == before


def strict_json(text: str) -> object:
    """JSON as the standard has it: NaN and Infinity are not numbers."""
    def refuse(name: str) -> None:
        raise ValueError(f"{name} in the output")
    return json.loads(text, parse_constant=refuse)


def test_a_diverged_loss_keeps_status_json_valid(runner: CliRunner, state_dir: Path,
                                                tmp_path: Path) -> None:
    """The trainer writes a NaN loss as NaN; `status --json` and `list --json` stay JSON."""
    job_dir = state_dir / "jobs" / JOB
    job_dir.mkdir(parents=True)
    out = tmp_path / "out"
    (out / "metrics").mkdir(parents=True)
    (out / "metrics" / "rank0.jsonl").write_text(
        '{"event": "step", "epoch": 0, "step": 3, "global_step": 3, "loss": NaN, "lr": Infinity}\n')
    (job_dir / "exit_code").write_text("1\n")
    (job_dir / "record.json").write_text(record(output_dir=str(out)).replace(
        '"job_dir": ""', f'"job_dir": "{job_dir}"'))
    status = runner.invoke(cli, ["status", JOB, "--json"])
    assert status.exit_code == 0, status.output
    assert strict_json(status.output)["progress"]["loss"] is None
    listed = runner.invoke(cli, ["list", "--json"])
    assert listed.exit_code == 0 and strict_json(listed.output)[0]["id"] == JOB


def test_a_damaged_exit_code_file_is_named(runner: CliRunner, state_dir: Path) -> None:
    job_dir = state_dir / "jobs" / JOB
    job_dir.mkdir(parents=True)
    (job_dir / "exit_code").write_text("nan\n")
    (job_dir / "record.json").write_text(record().replace('"job_dir": ""',
                                                          f'"job_dir": "{job_dir}"'))
    status = runner.invoke(cli, ["status", JOB])
    assert status.exit_code == 0, status.output
    assert f"exit code file '{job_dir}/exit_code' is damaged: 'nan' is not an exit code" \
        in status.output
