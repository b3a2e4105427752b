"""`genpt serve`: a bundle's models behind KServe's Python model server.

  protocol.py     Open Inference Protocol v2 tensors <-> task-model rows, with the 4xx checks
  completions.py  OpenAI-style /v1/completions over the exported LM (sampling, logprobs, echo)
  batcher.py      concurrent requests of one model -> one ONNX Runtime call
  bundles.py      a loaded, warmed-up bundle version; the source it comes from; hot reload
  app.py          the KServe REST server: routes, readiness, metrics, body limit, start

docs/serving.md explains the choices (why KServe, what it lacks and what is written here).
"""
