//! A real upstream application for proxy tests: it answers every request with the path and
//! the headers it received, as JSON (`{"path": ..., "headers": {name: [values]}}`).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Starts the echo upstream on 127.0.0.1; it runs until the test's runtime ends.
pub async fn echo() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let mut headers = serde_json::Map::new();
                    for name in req.headers().keys() {
                        let values: Vec<_> = req
                            .headers()
                            .get_all(name)
                            .iter()
                            .map(|v| serde_json::Value::from(v.to_str().unwrap_or("?")))
                            .collect();
                        headers.insert(name.to_string(), values.into());
                    }
                    let body =
                        serde_json::json!({"path": req.uri().to_string(), "headers": headers});
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(
                        body.to_string(),
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}
