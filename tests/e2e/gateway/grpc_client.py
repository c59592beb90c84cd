"""The gRPC client of the `p3_grpc` test (tests/e2e/gateway/edge.rs): calls the `p3-grpc` function
through the gateway with Python's grpcio and prints what came back, one fact per line.

    python3 grpc_client.py plain HOST:PORT        (h2c, prior knowledge)
    python3 grpc_client.py tls HOST:PORT CA.pem   (HTTPS, ALPN h2, trusting CA.pem)

A gRPC client names a method by its path, `/<package.Service>/<Method>`. Through the gateway the path
is `/function/<name>` followed by that, and the function sees `/<package.Service>/<Method>`. Generated
stubs always use the bare path; a channel's `unary_unary` (as here) takes any path, and an
interceptor can add the prefix to a stub's calls.
"""

import sys

import grpc

PREFIX = "/function/p3-grpc"
# Protobuf for a message whose field 1 is the string "hello": the function echoes it.
MESSAGE = b"\x0a\x05hello"


def main():
    mode, target = sys.argv[1], sys.argv[2]
    if mode == "tls":
        with open(sys.argv[3], "rb") as ca:
            channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(ca.read()))
    else:
        channel = grpc.insecure_channel(target)
    with channel:
        # No serializers: the request and response are the message's bytes.
        echo = channel.unary_unary(PREFIX + "/wasmgate.test.Echo/Echo")
        reply, call = echo.with_call(MESSAGE, timeout=30)
        print("echo", reply.hex())
        trailers = dict(call.trailing_metadata())
        print("path", trailers.get("x-grpc-path"))
        other = channel.unary_unary(PREFIX + "/wasmgate.test.Echo/Other")
        try:
            other(MESSAGE, timeout=30)
            print("other", "OK")
        except grpc.RpcError as error:
            print("other", error.code())


if __name__ == "__main__":
    main()
