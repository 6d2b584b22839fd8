"""Background subscriptions for polymongo plugins written in Python.

A plugin whose manifest declares ``[[subscriptions]]`` (``docs/STREAMS.md``) exports
``subscriber`` beside ``handler`` (world ``polymongo:plugin/tenant-subscriber@0.2.0``):
besides ``class Handler(Plugin)``, ``app.py`` defines ``class Subscriber(Consumer)`` and
implements :meth:`Consumer.consume`::

    from polymongo_guest import tenant
    from polymongo_guest.subscriber import Consumer, Delivery

    class Subscriber(Consumer):
        def consume(self, delivery: Delivery) -> None:
            for event in delivery.events:
                tenant().collection("seen").update_one(
                    {"_id": event["_id"]["_data"]}, {"$set": {"op": event["operationType"]}},
                    upsert=True)

``build.py`` builds the world ``tenant-subscriber`` when the app module defines
``Subscriber`` (this module can only be imported in that world: it needs the bindings of the
``subscriber`` export).

Delivery is at least once: raising (any exception), or returning an exception, makes the host
back off and deliver the same events again, and a batch in flight when the host stopped is
delivered again after the restart. Make :meth:`Consumer.consume` idempotent, e.g. upsert by the
event's ``_id`` (its resume token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from componentize_py_types import Err
from wit_world import exports as _exports

from . import _reseed, decode

__all__ = ["Consumer", "Delivery"]


@dataclass
class Delivery:
    """One batch of change events."""

    #: The tenant the events are for; :func:`polymongo_guest.tenant` is its database.
    tenant: str
    #: The subscription's name (from the manifest).
    subscription: str
    #: The change events, in order (``_id`` is each event's resume token, then
    #: ``operationType``, ``documentKey``, ``fullDocument``, ...), decoded like every document.
    events: list[dict[str, Any]]


def _message(e: BaseException) -> str:
    text = str(e)
    return text if text else type(e).__name__


class Consumer(_exports.Subscriber):
    """Base class of the component's ``Subscriber`` export: subclass it in ``app.py`` as
    ``class Subscriber(Consumer)`` and implement :meth:`consume`."""

    def consume(self, delivery: Delivery) -> Optional[BaseException]:
        """Handles one batch of events. Returning (``None``) acknowledges it; raising, or
        returning an exception, makes the host deliver it again after a back-off."""
        raise NotImplementedError

    def deliver(self, tenant: str, subscription: str, events: list[bytes]) -> None:
        """The WIT export: decodes the events and calls :meth:`consume`; any failure becomes
        the ``err`` the host retries on."""
        _reseed()
        try:
            decoded = [decode(bytes(e)) for e in events]
            outcome = self.consume(Delivery(tenant, subscription, decoded))
        except Exception as e:  # noqa: BLE001 (every failure means "deliver again")
            raise Err(_message(e)) from None
        if isinstance(outcome, BaseException):
            raise Err(_message(outcome))
