"""Ascend placement rules by chip generation: which card sets a job may use on one server.

Ascend 910 (Atlas 800 training server) joins its 8 cards in two HCCS rings of four (0-3, 4-7):
a job of 1, 2 or 4 cards must sit inside one ring and an 8-card job takes the whole server
(MindSpore's hccl_tools "[0,8) ... cross-group such as [3,6) are prohibited";
mindspore-ai/models utils/hccl_tools/README.md). Ascend 910B/910C servers connect their cards
all-to-all (HCCS full mesh) and have no ring rule; servers hold 8 or 16 cards
(MindX DL node label `accelerator-type: module-910b-8` / `module-910b-16`).

The chip is an Ascend fact, not a scheduler's: it is the job spec's `ascend_chip`
(`--ascend-chip`), which every backend and `rlaunch ranktable` read; a backend may default it
(k8s: the chip our image targets), and without one the stricter 910 rules apply.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chip:
    """What a chip generation means for placement and for MindX DL's labels."""

    name: str
    # `ring-controller.atlas` label value the MindX DL operator and Volcano plugin key on
    # (mind-cluster component/ascend-operator ascend_job.md examples: ascend-910 / ascend-910b).
    ring_label: str
    cards_per_server: int
    allowed_counts: tuple[int, ...]
    # HCCS rings a partial-server job must fit in; empty: no ring rule.
    rings: tuple[range, ...] = ()

    def accelerator_type(self, cards: int) -> str:
        """MindX DL's `accelerator-type` node label for a server that holds `cards` cards."""
        if self.name == "910":
            return "module"
        return "module-910b-16" if cards > 8 else "module-910b-8"


CHIPS: dict[str, Chip] = {
    "910": Chip("910", "ascend-910", 8, (1, 2, 4, 8), (range(4), range(4, 8))),
    "910b": Chip("910b", "ascend-910b", 16, (1, 2, 4, 8, 16)),
}
# Our Ascend image is built on a 910B CANN base (docker/), so Kubernetes jobs default to it.
IMAGE_CHIP = "910b"
# A job that names no chip (and whose backend gives none) gets the rules that hold on every
# generation's 8-card servers.
STRICT_CHIP = "910"
# The device plugin's resource for every 910 generation (MindX DL ascend-device-plugin).
RESOURCE_NAME = "huawei.com/Ascend910"


def placement_problems(devices_per_node: int, device_ids: list[int], chip: Chip,
                       count_label: str = "--ascend", ids_label: str = "device_ids") -> list[str]:
    """Why `device_ids` (one server's cards) cannot hold a job on `chip`; empty when they can.
    The labels name the count and the card list as the user gave them."""
    n = devices_per_node
    if n not in chip.allowed_counts:
        counts = ", ".join(str(c) for c in chip.allowed_counts[:-1])
        return [(f"{count_label} {n} is not allowed: devices per node must be {counts} or "
                f"{chip.allowed_counts[-1]} on Ascend {chip.name}")]
    if len(device_ids) != n or len(set(device_ids)) != n:
        return [f"{ids_label} {device_ids} must be {n} distinct card numbers"]
    top = chip.cards_per_server - 1
    if any(not isinstance(i, int) or isinstance(i, bool) or not 0 <= i <= top for i in device_ids):
        return [f"{ids_label} {device_ids} must be within 0-{top} on Ascend {chip.name}"]
    if chip.rings and n < chip.cards_per_server and not any(
            set(device_ids) <= set(ring) for ring in chip.rings):
        rings = " or ".join(f"{r.start}-{r.stop - 1}" for r in chip.rings)
        return [(f"{ids_label} {device_ids}: a {n}-card Ascend {chip.name} job must sit within "
                f"devices {rings}")]
    return []
