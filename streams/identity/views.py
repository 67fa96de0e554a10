"""HTTP views of the identity graph: explain a link, erase or split a person."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import faust
from faust.web import Request, Response, View

from streams.identity.data_keys import RedisKeyStore
from streams.identity.erasure import Shredder, erase_person
from streams.identity.identifiers import explained_identifier, legacy_forms, stored_identifier
from streams.identity.sealing import AuditSealer
from streams.identity.split import SplitError
from streams.identity.split_person import split_person
from streams.kafka import topics as T
from streams.web.views import authorized

if TYPE_CHECKING:  # the worker context is built by streams/app.py
    from streams.app import WorkerContext

__all__ = ["register"]


def register(app: faust.App, ctx: WorkerContext) -> None:
    s = ctx.settings
    raw = dict(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw", partitions=s.partitions)
    changes = app.topic(s.topic(T.IDENTITY_CHANGES), **raw)
    profile_events = app.topic(s.topic(T.PROFILE_EVENTS), **raw)

    def parse(request: Request, name: str, explain: bool = False) -> tuple[Any, str | None]:
        text = request.query.get(name)
        if not text:
            return None, f"missing query parameter {name}=TYPE:VALUE"
        read = explained_identifier if explain else stored_identifier
        try:
            return read(text, ctx.normalizer.hasher, s.default_phone_region, ctx.identity.rules), None
        except ValueError as exc:
            return None, f"{name}: {exc}"

    @app.page("/identity/why")
    class Why(View):
        async def get(self, request: Request) -> Response:
            if not authorized(s.web_token, request):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            a, err_a = parse(request, "a", explain=True)
            b, err_b = parse(request, "b", explain=True)
            if err_a or err_b:
                return self.json({"error": err_a or err_b}, status=400)
            # linked: the chain; not linked: the refusing rule (touchpoint identity why adds the records)
            return self.json(await ctx.identity.explain(a, b))

    @app.page("/identity/erase")
    class Erase(View):
        async def post(self, request: Request) -> Response:
            if not authorized(s.web_token, request):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            ident, err = parse(request, "id")
            if err:
                return self.json({"error": err}, status=400)

            async def send_change(key: bytes, value: bytes) -> None:
                await changes.send(key=key, value=value)

            async def send_control(key: bytes, value: bytes) -> None:
                await profile_events.send(key=key, value=value)

            async def send_key(key: bytes, value: bytes | None) -> None:  # a tombstone: the producer, not Topic.send
                await (await app.producer.send(s.topic(T.IDENTITY_KEYS), key, value, partition=None, timestamp=None, headers=None))

            shredder = Shredder(RedisKeyStore(ctx.identity.redis, s.namespace), s.pii_key, send_key)
            legacy = legacy_forms(request.query["id"], ctx.normalizer.hasher, s.default_phone_region)
            result = await erase_person(ctx.identity, ident, send_change, send_control, time.time_ns() // 1_000_000, legacy, shredder)
            if result.refused:
                return self.json({"error": f"refused: {result.refused}"}, status=409)
            return self.json({"erased": result.profile_id is not None, "profile_id": result.profile_id,
                              "profile_ids": list(result.profile_ids), "identifiers": len(result.identifiers)})

    @app.page("/identity/split")
    class Split(View):
        """``POST /identity/split?id=TYPE:VALUE`` (detach) or ``?a=A&b=B`` (cut a recorded link),
        ``&actor=NAME`` (recorded on identity.changes). Reads profile-events to its end."""

        async def post(self, request: Request) -> Response:
            if not authorized(s.web_token, request):
                return self.json({"error": "missing or wrong bearer token"}, status=401)
            actor = (request.query.get("actor") or "").strip()
            if not actor:
                return self.json({"error": "missing query parameter actor=NAME (who splits)"}, status=400)
            how: dict[str, Any] = {}
            if "id" in request.query:
                how["detach"], err = parse(request, "id")
            else:
                a, err_a = parse(request, "a")
                b, err_b = parse(request, "b")
                err = err_a or err_b
                how["cut"] = (a, b)
            if err:
                return self.json({"error": err}, status=400)

            async def send_change(key: bytes, value: bytes) -> Any:
                return await (await changes.send(key=key, value=value))

            async def send_control(key: bytes, value: bytes) -> Any:
                return await (await profile_events.send(key=key, value=value))

            async def send_key(key: bytes, value: bytes | None) -> None:
                await (await app.producer.send(s.topic(T.IDENTITY_KEYS), key, value, partition=None, timestamp=None, headers=None))

            sealer = AuditSealer(RedisKeyStore(ctx.identity.redis, s.namespace), s.pii_key, send_key)
            try:
                out = await split_person(ctx.identity, s, actor[:200], send_change, send_control, time.time_ns() // 1_000_000,
                                         **how, seal=sealer.seal)
                await sealer.confirm()  # every send above was acknowledged
            except SplitError as exc:
                return self.json({"error": f"refused: {exc}"}, status=409)
            return self.json(out)
