"""Every upstream name this package overrides or relies on, with the parameters it expects.

``tests/runtime/test_upstream.py`` imports each and compares its signature, so an upgrade
that renames, removes or re-signs one of them fails loudly in the test suite instead of
quietly disabling a patch. runtime/README.md says what each patch is for; requirements.txt
pins these packages to the minor versions listed in :data:`WRITTEN_AGAINST`.
"""

from __future__ import annotations

from typing import NamedTuple

# The versions the patches were written and measured against (requirements.txt pins the minors).
WRITTEN_AGAINST = {
    "django": "5.2",
    "channels": "4.3",
    "channels-redis": "4.3",
    "daphne": "4.2",
    "twisted": "26.10",
    "autobahn": "26.11",
    "redis": "8.1",
    "asgiref": "3.13",
    "psycopg": "3.3",
    "uvicorn": "0.55",
}


class Upstream(NamedTuple):
    """``target`` is ``module:qualified.name``; ``params`` the parameter names after ``self``
    (None: only its existence matters, e.g. a class or an attribute); ``used_by`` our module."""

    target: str
    params: tuple[str, ...] | None
    used_by: str


UPSTREAM = [
    # runtime/cache.py: Django's Redis cache client (one redis.Redis per pool instead of per call)
    Upstream("django.core.cache.backends.redis:RedisCacheClient.get_client", ("key", "write"), "runtime.cache"),
    Upstream(
        "django.core.cache.backends.redis:RedisCacheClient._get_connection_pool_index", ("write",), "runtime.cache"
    ),
    Upstream("django.core.cache.backends.redis:RedisCacheClient._get_connection_pool", ("write",), "runtime.cache"),
    Upstream("django.core.cache.backends.redis:RedisCache._cache", None, "runtime.cache"),
    Upstream(
        "django.core.cache.backends.redis:RedisCacheClient.__init__",
        ("servers", "serializer", "pool_class", "parser_class", "options"),
        "runtime.cache",
    ),
    # runtime/serve.py: daphne's protocol, server, access log and command line
    Upstream("daphne.ws_protocol:WebSocketProtocol.onMessage", ("payload", "isBinary"), "runtime.serve"),
    Upstream("daphne.ws_protocol:WebSocketProtocol.serverSend", ("content", "binary"), "runtime.serve"),
    Upstream("daphne.server:Server.__init__", None, "runtime.serve"),
    Upstream("daphne.server:Server.create_application", ("protocol", "scope"), "runtime.serve"),
    Upstream("daphne.server:Server.run", (), "runtime.serve"),
    Upstream("daphne.access:AccessLogGenerator.__call__", ("protocol", "action", "details"), "runtime.serve"),
    Upstream("daphne.cli:CommandLineInterface.run", ("args",), "runtime.serve"),
    Upstream("daphne.cli:CommandLineInterface.server_class", None, "runtime.serve"),
    # runtime/uvserve.py: uvicorn's WebSocket (sans-I/O websockets) and httptools HTTP protocols
    Upstream(
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol.__init__",
        ("config", "server_state", "app_state"),
        "runtime.uvserve",
    ),
    Upstream(
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol.connection_made",
        ("transport",),
        "runtime.uvserve",
    ),
    Upstream(
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol.pause_writing",
        (),
        "runtime.uvserve",
    ),
    # receive() reads self.queue (get, empty), which uvserve replaces with an Inbox
    Upstream(
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol.receive", (), "runtime.uvserve"
    ),
    Upstream("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_message_begin", (), "runtime.uvserve"),
    Upstream("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_url", ("url",), "runtime.uvserve"),
    Upstream("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_header", ("name", "value"), "runtime.uvserve"),
    Upstream("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_headers_complete", (), "runtime.uvserve"),
    Upstream("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_body", ("body",), "runtime.uvserve"),
    Upstream("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.on_message_complete", (), "runtime.uvserve"),
    Upstream("uvicorn.protocols.http.httptools_impl:HttpToolsProtocol.data_received", ("data",), "runtime.uvserve"),
    Upstream("uvicorn.protocols.utils:ClientDisconnected", None, "runtime.consumer"),
    Upstream("uvicorn.server:Server.shutdown", ("sockets",), "runtime.uvserve"),
    # runtime/serve.py: Twisted's HTTP channel (the header block limit), built by daphne's
    # HTTPFactory (Twisted's HTTPFactory.protocol) inside the wrapper that can switch to HTTP/2
    Upstream("twisted.web.http:HTTPChannel.lineReceived", ("line",), "runtime.serve"),
    Upstream("twisted.web.http:HTTPChannel.lineLengthExceeded", ("line",), "runtime.serve"),
    Upstream("twisted.web.http:HTTPChannel.loseConnection", (), "runtime.serve"),
    Upstream("twisted.web.http:HTTPChannel.allHeadersReceived", (), "runtime.serve"),
    Upstream("twisted.web.http:HTTPChannel.rawDataReceived", ("data",), "runtime.serve"),
    Upstream("twisted.web.http:HTTPChannel.length", None, "runtime.serve"),
    Upstream("twisted.web.http:Request.__init__", ("channel", "queued", "parsePOSTFormSubmission"), "runtime.serve"),
    Upstream("daphne.http_protocol:WebRequest.__init__", ("args", "kwargs"), "runtime.serve"),
    Upstream("twisted.web.http:HTTPChannel.totalHeadersSize", None, "runtime.serve"),
    Upstream("twisted.web.http:HTTPChannel._receivedHeaderSize", None, "runtime.serve"),
    Upstream("twisted.web.http:HTTPFactory.protocol", None, "runtime.serve"),
    Upstream("twisted.web.http:_GenericHTTPChannelProtocol.__init__", ("original",), "runtime.serve"),
    # runtime/layers.py: channels-redis' pub/sub layer and redis-py's PubSub
    Upstream("channels_redis.pubsub:RedisPubSubChannelLayer._get_layer", (), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisPubSubLoopLayer.__init__", None, "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisPubSubLoopLayer._get_group_channel_name", ("group",), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisPubSubLoopLayer._get_shard", ("channel_or_group_name",), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisPubSubLoopLayer.group_add", ("group", "channel"), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisPubSubLoopLayer.group_discard", ("group", "channel"), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisPubSubLoopLayer.group_send", ("group", "message"), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisPubSubLoopLayer.new_channel", ("prefix",), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisPubSubLoopLayer.flush", (), "runtime.layers"),
    # runtime/presence.py: the shard's client (its pool) and SUBSCRIBE of the process channel
    Upstream("channels_redis.pubsub:RedisSingleShardConnection.subscribe", ("channel",), "runtime.presence"),
    Upstream(
        "channels_redis.pubsub:RedisSingleShardConnection.__init__", ("host", "channel_layer"), "runtime.presence"
    ),
    Upstream("channels_redis.pubsub:RedisSingleShardConnection._ensure_redis", (), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisSingleShardConnection.publish", ("channel", "message"), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisSingleShardConnection._do_receiving", (), "runtime.layers"),
    Upstream("channels_redis.pubsub:RedisSingleShardConnection._receive_message", ("message",), "runtime.layers"),
    Upstream("channels_redis.utils:_wrap_close", ("proxy", "loop"), "runtime.layers"),
    Upstream("redis.asyncio.client:PubSub.connect", (), "runtime.layers"),
    Upstream("redis.asyncio.client:PubSub.parse_response", ("block", "timeout"), "runtime.layers"),
    Upstream(
        "redis.asyncio.client:PubSub._reconnect",
        ("conn", "error", "failure_count", "start_time", "command_name"),
        "runtime.layers",
    ),
    Upstream("redis.asyncio.client:PubSub.on_connect", ("connection",), "runtime.layers"),
    # runtime/consumer.py: Channels' consumer
    Upstream("channels.consumer:AsyncConsumer.dispatch", ("message",), "runtime.consumer"),
    Upstream("channels.consumer:AsyncConsumer.__call__", ("scope", "receive", "send"), "runtime.consumer"),
    Upstream("channels.consumer:get_handler_name", ("message",), "runtime.consumer"),
    Upstream("channels.generic.websocket:AsyncWebsocketConsumer.websocket_receive", ("message",), "runtime.consumer"),
    Upstream(
        "channels.generic.websocket:AsyncWebsocketConsumer.send",
        ("text_data", "bytes_data", "close"),
        "runtime.consumer",
    ),
    Upstream("channels.generic.websocket:AsyncWebsocketConsumer.close", ("code", "reason"), "runtime.consumer"),
    Upstream(
        "channels.generic.websocket:AsyncWebsocketConsumer.websocket_disconnect", ("message",), "runtime.consumer"
    ),
    Upstream("autobahn.exception:Disconnected", None, "runtime.consumer"),
    # runtime/origin.py: Channels' origin check
    Upstream(
        "channels.security.websocket:OriginValidator.__init__", ("application", "allowed_origins"), "runtime.origin"
    ),
    Upstream("channels.security.websocket:OriginValidator.valid_origin", ("parsed_origin",), "runtime.origin"),
    # runtime/origin.py: Django's host check, applied to socket handshakes
    Upstream("django.http.request:split_domain_port", ("host",), "runtime.origin"),
    Upstream("django.http.request:validate_host", ("host", "allowed_hosts"), "runtime.origin"),
    # runtime/async_db.py: Django's PostgreSQL backend, for connection parameters and error mapping
    Upstream("django.db.backends.postgresql.base:DatabaseWrapper.get_connection_params", (), "runtime.async_db"),
    Upstream("django.db.backends.base.base:BaseDatabaseWrapper.wrap_database_errors", None, "runtime.async_db"),
    Upstream("django.db.utils:ConnectionHandler.create_connection", ("alias",), "runtime.async_db"),
    # runtime/http.py: asgiref's thread-sensitive context with a caller's executor
    Upstream("asgiref.sync:ThreadSensitiveContext.__init__", ("executor",), "runtime.http"),
    # runtime/plans.py: the prepared statement flag of psycopg's cursor
    Upstream("psycopg:Cursor.execute", ("query", "params", "prepare", "binary"), "runtime.plans"),
    Upstream("psycopg:AsyncConnection.execute", ("query", "params", "prepare", "binary"), "runtime.async_db"),
]
