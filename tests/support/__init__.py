"""The test harness: what the tests use, none of it a test.

- :mod:`.server`: the one server launcher (``python -m app`` on a free port);
- :mod:`.clients`: real-socket WebSocket and SSE clients, sessions, ``@aio``;
- :mod:`.cluster`: several processes on a real Redis; :mod:`.faults`: a TCP proxy
  that cuts, stalls and delays; :mod:`.corepair`: N cores and a fake clock in-process;
- :mod:`.fake_openai`: an OpenAI-compatible upstream; :mod:`.fuzzer`: ``make fuzz``;
- :mod:`.node_deps`: the Node.js packages the client tests need.
"""
