"""The API dialects the router speaks, translated to and from one canonical form.

Inside the router every request is an OpenAI chat-completions body: the policy,
the classifier, the cache and the upstreams read nothing else. Each module here
translates one dialect in and out, as pure functions and small stream
translators with no I/O:

* `openai_chat`: the canonical format's own helpers (text of a message, the
  conversation key, JSON-object parsing, ids);
* `responses`: the OpenAI Responses API (`/v1/responses`);
* `anthropic`: Anthropic Messages (`/v1/messages`, `/v1/messages/count_tokens`);
* `anthropic_upstream`: chat bodies to an Anthropic-native upstream and back;
* `errors`: error bodies and stream error events in each dialect.
"""
