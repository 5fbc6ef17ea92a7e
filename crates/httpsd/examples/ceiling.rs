//! The ceiling of the static benchmark: a bare hyper server that answers every request
//! with the same bytes from memory (`Content-Type: application/json`). No routing, no
//! tree, no metrics: what `httpsd serve` is measured against in `bench/static.py`.
//!
//! Usage: `ceiling ADDR BODY_FILE`, e.g. `ceiling 127.0.0.1:0 body.json`; prints
//! `Serving on http://ADDR` once it listens.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(file)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: ceiling ADDR BODY_FILE");
    };
    let body = Bytes::from(std::fs::read(&file)?);
    let listener = TcpListener::bind(&addr).await?;
    println!("Serving on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let body = body.clone();
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(body))
                            .unwrap_or_default(),
                    )
                }
            });
            let _ = Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
