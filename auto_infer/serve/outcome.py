"""What serve found for one instance: its launch, the plan (keep / restart / start), readiness, chat
(and the verdict the gateway shares)."""

from __future__ import annotations

from dataclasses import dataclass, field

from auto_infer.serve import probe
from auto_infer.serve.launch import Launch


class Verdict:
    """Ready, then a real chat: what serve asks of a server and of the gateway alike."""

    ready: probe.Readiness
    chat: probe.Chat | None

    def worker_rank(self) -> str | None:
        """A multi-node worker rank serves no HTTP: up is all it can be (its description), else None."""
        return None

    @property
    def ok(self) -> bool:
        if self.worker_rank() is not None:
            return self.ready.ok
        return self.ready.ok and self.chat is not None and self.chat.ok

    @property
    def reason(self) -> str:
        if not self.ready.ok:
            return self.ready.reason
        return self.worker_rank() or (self.chat.reason if self.chat else "no chat")


@dataclass
class Result(Verdict):
    launch: Launch
    action: str                     # keep | restart | start
    why: str
    pid: int | None = None
    spawned: float | None = None
    ready: probe.Readiness = field(default_factory=probe.Readiness)
    chat: probe.Chat | None = None

    def worker_rank(self) -> str | None:
        worker = self.launch.inst.worker
        return worker.describe() if worker is not None else None
