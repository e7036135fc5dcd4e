//! tonic (gRPC over HTTP/2) with the prost codec, unary calls carrying one
//! `bytes` field.
//!
//! The service is written out by hand: it is what `tonic-prost-build`
//! generates for
//!
//! ```text
//! syntax = "proto3";
//! package bench;
//! message Payload { bytes data = 1; }
//! service Bench {
//!   rpc Echo(Payload) returns (Payload);
//!   rpc Sink(Payload) returns (Payload);
//! }
//! ```
//!
//! (same `Grpc::unary` calls on both ends, same `ProstCodec`), without
//! needing `protoc` at build time. The server is served without tonic's
//! router (`Server::serve_with_incoming` on the service itself), which only
//! saves tonic work. Both ends keep tonic's defaults except `TCP_NODELAY`
//! (tonic's default too) and a 16 MiB message limit (the default 4 MiB
//! decoding limit cannot carry the 8 MiB cases).

use std::convert::Infallible;
use std::io;
use std::task::{Context, Poll};

use bytes::Bytes;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc as ServerGrpc, UnaryService};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::{ACK, BoxError, MAX_MESSAGE, Op, Rpc};

const ECHO_PATH: &str = "/bench.Bench/Echo";
const SINK_PATH: &str = "/bench.Bench/Sink";

/// `message Payload { bytes data = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct Payload {
    #[prost(bytes = "bytes", tag = "1")]
    data: Bytes,
}

// ------------------------------------------------------------------- server

#[derive(Clone, Copy)]
struct BenchServer;

struct Handler(Op);

impl UnaryService<Payload> for Handler {
    type Response = Payload;
    type Future = BoxFuture<Response<Payload>, Status>;

    fn call(&mut self, request: Request<Payload>) -> Self::Future {
        let op = self.0;
        Box::pin(async move {
            let payload = request.into_inner();
            let data = match op {
                Op::Echo => payload.data,
                Op::Sink => Bytes::from_static(ACK),
            };
            Ok(Response::new(Payload { data }))
        })
    }
}

impl<B> Service<http::Request<B>> for BenchServer
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let op = match req.uri().path() {
            ECHO_PATH => Op::Echo,
            SINK_PATH => Op::Sink,
            _ => {
                return Box::pin(async move {
                    let mut response = http::Response::new(tonic::body::Body::default());
                    let headers = response.headers_mut();
                    headers.insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                    headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                    Ok(response)
                });
            }
        };
        Box::pin(async move {
            let mut grpc = ServerGrpc::new(ProstCodec::<Payload, Payload>::default())
                .apply_max_message_size_config(Some(MAX_MESSAGE), Some(MAX_MESSAGE));
            Ok(grpc.unary(Handler(op), req).await)
        })
    }
}

/// Serves on `host:port`; returns the bound address.
pub(crate) fn serve(addr: &str) -> Result<String, BoxError> {
    let incoming = TcpIncoming::bind(addr.parse()?)?.with_nodelay(Some(true));
    let local = incoming.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = Server::builder().serve_with_incoming(BenchServer, incoming).await {
            eprintln!("rpc: tonic server failed: {e}");
        }
    });
    Ok(local.to_string())
}

// ------------------------------------------------------------------- client

/// One tonic client (one HTTP/2 connection); clones share it.
#[derive(Clone)]
pub(crate) struct Client(tonic::client::Grpc<Channel>);

impl Client {
    pub(crate) async fn connect(addr: &str) -> Result<Self, BoxError> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?;
        let grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Self(grpc))
    }
}

impl Rpc for Client {
    async fn call(&mut self, op: Op, payload: Bytes) -> Result<usize, BoxError> {
        self.0.ready().await.map_err(|e| io::Error::other(format!("service was not ready: {e}")))?;
        let path = PathAndQuery::from_static(match op {
            Op::Echo => ECHO_PATH,
            Op::Sink => SINK_PATH,
        });
        let codec = ProstCodec::<Payload, Payload>::default();
        let response = self.0.unary(Request::new(Payload { data: payload }), path, codec).await?;
        Ok(response.into_inner().data.len())
    }
}
