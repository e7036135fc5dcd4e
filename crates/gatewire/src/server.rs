//! A server: listeners on one or more endpoints, a connection per peer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatewire_proto::connection::Role;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::config::Config;
use crate::conn::Connection;
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::router::Router;
use crate::transport::listener::{ListenOptions, Listener};

/// Accept errors (EMFILE, ECONNABORTED...) back off from this...
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// ...doubling up to this.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A running server. Dropping it stops accepting; [`Server::shutdown`] also
/// closes every connection gracefully.
#[derive(Debug)]
pub struct Server {
    endpoints: Vec<Endpoint>,
    stop: CancellationToken,
    connections: Arc<Mutex<Vec<Connection>>>,
    tasks: JoinSet<()>,
}

impl Server {
    pub(crate) async fn bind(urls: &[&str], config: Config, router: Router) -> Result<Self> {
        let opts = ListenOptions {
            max_frame: config.limits.max_frame,
            ws_origins: config.ws_origins.clone(),
            handshake_timeout: config.timeouts.handshake,
            // Security: the certificate for `tls://` and `wss://` endpoints.
            tls: config.tls_server.clone(),
            ..ListenOptions::default()
        };
        let mut listeners = Vec::new();
        for url in urls {
            let endpoint: Endpoint =
                url.parse().map_err(|e: crate::endpoint::EndpointError| Error::config(e.to_string()))?;
            listeners.push(Listener::bind(&endpoint, &opts).await?);
        }
        let stop = CancellationToken::new();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let mut tasks = JoinSet::new();
        let mut endpoints = Vec::new();
        for listener in listeners {
            endpoints.push(listener.local_endpoint());
            tasks.spawn(accept_loop(
                listener,
                config.clone(),
                router.clone(),
                stop.clone(),
                connections.clone(),
                permits.clone(),
            ));
        }
        Ok(Self { endpoints, stop, connections, tasks })
    }

    /// The endpoints actually bound (with the real port for `:0`).
    pub fn local_endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The open connections.
    pub fn connections(&self) -> Vec<Connection> {
        let mut list = self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        list.retain(|c| !c.is_closed());
        list.clone()
    }

    /// Stops accepting, closes every connection gracefully (calls in flight
    /// finish within the drain timeout) and waits until they are closed.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        let connections = self.connections();
        let closing: Vec<_> = connections.iter().map(Connection::close).collect();
        futures_util::future::join_all(closing).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    mut listener: Listener,
    config: Config,
    router: Router,
    stop: CancellationToken,
    connections: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => r,
        };
        let transport = match accepted {
            Ok(t) => {
                backoff = ACCEPT_BACKOFF_MIN;
                t
            }
            Err(e) => {
                warn!(error = %e, "accept failed; backing off {backoff:?}");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let config = config.clone();
        let router = router.clone();
        let connections = connections.clone();
        tokio::spawn(async move {
            match Connection::start(transport, Role::Server, config, router).await {
                Ok(conn) => {
                    {
                        let mut list = connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        list.retain(|c| !c.is_closed());
                        list.push(conn.clone());
                    }
                    let _ = conn.closed().await;
                }
                Err(e) => debug!(error = %e, "handshake failed"),
            }
            drop(permit);
        });
    }
}
