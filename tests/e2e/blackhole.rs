//! A TCP proxy that can turn every connection open through it into a half-open one: the
//! sockets stay open, nothing more is forwarded either way, and no error is ever seen (as
//! after a NAT or a firewall drops the connection's state). Connections opened afterwards
//! are forwarded again. The fault a read deadline exists for.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Blackhole {
    pub port: u16,
    epoch: Arc<AtomicU64>,
}

impl Blackhole {
    /// Forwards a local port to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let epoch = Arc::new(AtomicU64::new(0));
        let shared = epoch.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let born = shared.load(Ordering::SeqCst);
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(forward(client_read, server_write, shared.clone(), born));
                tokio::spawn(forward(server_read, client_write, shared.clone(), born));
            }
        });
        Blackhole { port, epoch }
    }

    /// Every connection open now goes silent for good.
    pub fn cut(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    epoch: Arc<AtomicU64>,
    born: u64,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if epoch.load(Ordering::SeqCst) != born {
            // Half-open: hold both sockets, forward nothing, never close.
            std::future::pending::<()>().await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
