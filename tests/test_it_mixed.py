"""Users on different transports share one chat (PROTOCOL §7)."""

from __future__ import annotations

from support.clients import SseClient, WsClient, aio, asession, uniq, user_entry
from support.server import Server


@aio
async def test_ws_and_sse_users_talk_both_ways(srv: Server) -> None:
    ws_user = await asession(srv.http, uniq("Wes"))
    sse_user = await asession(srv.http, uniq("Sue"))
    wes = await WsClient.open(srv, ws_user)
    sue = await SseClient.open(srv, sse_user)

    # presence: each sees the other
    assert user_entry(sue.presence["users"], ws_user.userId) is not None
    await wes.expect(
        "presence-diff", lambda d: user_entry(d.get("upsert", []), sse_user.userId) is not None
    )

    # chat, both ways
    for sender, receiver in ((wes, sue), (sue, wes)):
        cid = uniq("mixed")
        reply = await sender.chat(f"hello from {sender.transport}", cid)
        assert reply.ok, reply
        env = await receiver.expect("chat", lambda d, cid=cid: d.get("clientId") == cid)
        assert env["data"]["userId"] == sender.user.userId
        assert env["data"]["text"] == f"hello from {sender.transport}"
        assert env["seq"] == reply.data["seq"]

    # typing, both ways
    for sender, receiver in ((wes, sue), (sue, wes)):
        assert (await sender.request("typing", {"isTyping": True})).ok
        env = await receiver.expect(
            "typing", lambda d, u=sender.user.userId: d["userId"] == u and d["isTyping"]
        )
        assert env["data"]["userName"] == sender.user.userName
        assert (await sender.request("typing", {"isTyping": False})).ok
        await receiver.expect(
            "typing", lambda d, u=sender.user.userId: d["userId"] == u and not d["isTyping"]
        )

    # webrtc signals, both ways, with the server-set sender
    for sender, receiver in ((wes, sue), (sue, wes)):
        sig = {"type": "offer", "sdp": f"v=0 from {sender.transport}"}
        assert (await sender.request("webrtc-signal", {"to": receiver.peer_id, "signal": sig})).ok
        env = await receiver.expect("webrtc-signal")
        assert env["data"]["from"] == sender.peer_id
        assert env["data"]["fromUser"] == sender.user.user
        assert env["data"]["signal"] == sig

    # media-state, both ways
    media = {"camera": True, "mic": True, "screen": False}
    for sender, receiver in ((wes, sue), (sue, wes)):
        assert (await sender.request("media-state", media)).ok

        def has(d: dict[str, object], s: WsClient | SseClient = sender) -> bool:
            entry = user_entry(d.get("upsert", []), s.user.userId)  # type: ignore
            return entry is not None and any(
                p["peerId"] == s.peer_id and p["media"] == media for p in entry["peers"]
            )

        await receiver.expect("presence-diff", has)

    # leaving, both ways
    await sue.close()
    await wes.expect("presence-diff", lambda d: sse_user.userId in d.get("remove", []))
    sue2 = await SseClient.open(srv, await asession(srv.http))
    await wes.close()
    await sue2.expect("presence-diff", lambda d: ws_user.userId in d.get("remove", []))


@aio
async def test_both_transports_see_the_same_durable_stream(srv: Server) -> None:
    wes = await WsClient.open(srv, await asession(srv.http))
    sue = await SseClient.open(srv, await asession(srv.http))
    cids = []
    for i in range(6):
        sender = (wes, sue)[i % 2]
        cid = uniq("s")
        cids.append(cid)
        assert (await sender.chat(f"msg {i}", cid)).ok
    for client in (wes, sue):
        await client.expect("chat", lambda d: d.get("clientId") == cids[-1])
    # from the later of the two joins on, both got the very same envelopes
    since = max(wes.ready["lastSeq"], sue.ready["lastSeq"])
    common = [e for e in wes.durable if e["seq"] > since]
    common_sse = [e for e in sue.durable if e["seq"] > since]
    upto = min(common[-1]["seq"], common_sse[-1]["seq"])
    assert [e for e in common if e["seq"] <= upto] == [e for e in common_sse if e["seq"] <= upto]
    seqs = [e["seq"] for e in common]
    assert seqs == sorted(set(seqs)), "seq strictly increases"


@aio
async def test_client_id_is_idempotent_across_the_users_transports(srv: Server) -> None:
    user = await asession(srv.http)
    ws_tab = await WsClient.open(srv, user)
    sse_tab = await SseClient.open(srv, user)
    cid = uniq("both")
    first = await ws_tab.chat("sent twice", cid)
    again = await sse_tab.chat("sent twice", cid)
    assert first.ok and again.ok
    assert (again.data["id"], again.data["seq"]) == (first.data["id"], first.data["seq"])
    for tab in (ws_tab, sse_tab):
        await tab.expect("chat", lambda d: d.get("clientId") == cid)
    # each tab of the user gets its own copy of the broadcast, once
    fence = uniq("fence")
    assert (await ws_tab.chat("fence", fence)).ok
    for tab in (ws_tab, sse_tab):
        await tab.expect("chat", lambda d: d.get("clientId") == fence)
        assert len(tab.seen("chat", lambda d: d.get("clientId") == cid)) == 1
