"""Names of everything a k8s job creates, from one place that render and API code both use.

A job is one workload object (AscendJob, Volcano Job or JobSet) named after the job id, plus our
ConfigMap `<job>-rlaunch` and, when the MindX DL operator writes the rank table, its ConfigMap
`rings-config-<job>`. Pod names and the node index of each pod follow what each controller does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

JOB_LABEL = "rlaunch.dev/job"
GATHER_LABEL = "rlaunch.dev/gather"
# The Indexed Job controller's pod annotation (k8s.io/api batch/v1 types.go
# JobCompletionIndexAnnotation); JobSet's child Jobs are Indexed Jobs.
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class Workload:
    """One kind of workload object the backend can create."""

    key: str  # the --opt workload= value
    api_version: str
    kind: str
    plural: str
    # Source of the CRD the rendered object follows (cited in tests/k8s/*.schema.json).
    crd: str

    @property
    def group(self) -> str:
        return self.api_version.split("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.split("/")[1]


WORKLOADS: dict[str, Workload] = {
    "acjob": Workload("acjob", "mindxdl.gitee.com/v1", "AscendJob", "ascendjobs",
                      "Ascend/mind-cluster component/ascend-operator/pkg/api/v1/ascendjob_types.go"),
    "vcjob": Workload("vcjob", "batch.volcano.sh/v1alpha1", "Job", "jobs",
                      "volcano-sh/volcano config/crd/volcano/bases/batch.volcano.sh_jobs.yaml"),
    "jobset": Workload("jobset", "jobset.x-k8s.io/v1alpha2", "JobSet", "jobsets",
                       "kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go"),
}
# The workloads each device kind can use; the first is the default (docs/kubernetes.md says why:
# a Volcano Job restarts its group within maxRetry on any cluster with Volcano; an AscendJob
# restarts only through MindX DL's fault handling, not verified here).
WORKLOADS_FOR_KIND: dict[str, tuple[str, ...]] = {
    "ascend": ("vcjob", "acjob"),
    "gpu": ("jobset", "vcjob"),
    "cpu": ("jobset", "vcjob"),
}
# The one task / replicated job that holds the node pods (AscendJob: its Worker replica spec).
NODE_TASK = "node"


@dataclass(frozen=True)
class JobNames:
    """Object, pod and host names of one job."""

    job: str
    workload: Workload

    @property
    def node_task(self) -> str:
        return NODE_TASK

    @property
    def config_map(self) -> str:
        return f"{self.job}-rlaunch"

    @property
    def rings_config(self) -> str:
        # MindX DL: the operator fills the ConfigMap named rings-config-<job name>.
        return f"rings-config-{self.job}"

    @property
    def scheduler_pod(self) -> str | None:
        """The AscendJob's Scheduler pod (kubeflow common naming, as the Workers'), or None."""
        return f"{self.job}-scheduler-0" if self.workload.key == "acjob" else None

    @property
    def gather_prefix(self) -> str:
        return f"{self.job}-gather-"

    @property
    def scheduler_host(self) -> str:
        """DNS name of node 0, where the MindSpore scheduler runs (JobSet and Volcano Job).

        JobSet pods are `<jobset>-<replicatedJob>-<jobIndex>-<podIndex>` under the headless
        Service named after the JobSet (jobset_types.go Network.Subdomain default); Volcano's svc
        plugin names pods `<job>-<task>-<index>` under a Service named after the job.
        """
        if self.workload.key == "jobset":
            return f"{self.job}-{NODE_TASK}-0-0.{self.job}"
        return f"{self.job}-{NODE_TASK}-0.{self.job}"

    def node_index(self, pod_name: str, annotations: dict[str, Any]) -> int | None:
        """The node (0..nodes-1) a pod runs as, or None for pods that are not node pods.

        JobSet: the completion index annotation. Volcano Job: `<job>-<task>-<index>`.
        AscendJob: the operator names pods like kubeflow's common controller,
        `<job>-worker-<index>` / `<job>-scheduler-0` (mind-cluster ascend-operator pod.go).
        """
        if self.workload.key == "jobset":
            value = str(annotations.get(COMPLETION_INDEX, ""))
            return int(value) if value.isdigit() else None
        task = "worker" if self.workload.key == "acjob" else NODE_TASK
        match = re.fullmatch(rf"{re.escape(self.job)}-{task}-(\d+)", pod_name)
        return int(match[1]) if match else None

    def owned_objects(self, operator_rank_table: bool) -> list[tuple[str, str, str]]:
        """(apiVersion, kind, name) of what submit creates, in creation order."""
        out = [("v1", "ConfigMap", self.config_map)]
        if operator_rank_table:
            out.append(("v1", "ConfigMap", self.rings_config))
        out.append((self.workload.api_version, self.workload.kind, self.job))
        return out


def names_for(job: str, workload: str) -> JobNames:
    """The names of job `job` run as `workload` (a WORKLOADS key)."""
    return JobNames(job, WORKLOADS[workload])
