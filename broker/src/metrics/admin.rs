//! The admin HTTP endpoint (`--admin HOST:PORT`, default 127.0.0.1:9644): `GET /metrics`
//! (Prometheus text) and `GET /health` (JSON).
//!
//! A small HTTP/1.1 server on its own std threads, off the shards and off the data path, and
//! independent of the async runtime (glommio could be swapped without touching it). It knows
//! nothing of the broker: it serves an `AdminHandler`. One short-lived thread per connection,
//! at most `ADMIN_CONNECTIONS_MAX` at once; every read and write has a timeout, the request
//! head is bounded, and each connection carries one request (`Connection: close`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Connections served at once; more are closed at once.
pub const ADMIN_CONNECTIONS_MAX: usize = 8;
/// Longest request head (request line + headers) read.
pub const ADMIN_REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// Read and write timeout of an admin connection.
pub const ADMIN_IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A response: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// What the server serves: GET (and HEAD) of a path, query string removed.
pub trait AdminHandler: Send + Sync + 'static {
    fn get(&self, path: &str) -> Response;
}

/// A running admin server; dropping it stops it (and waits for its accept thread).
pub struct AdminServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Serves `handler` on `listener` (already bound, so start-up fails early on a bad port).
    pub fn start(listener: TcpListener, handler: Arc<dyn AdminHandler>) -> std::io::Result<AdminServer> {
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("riptide-admin".into())
            .spawn(move || accept_loop(listener, handler, stop2))?;
        Ok(AdminServer { addr, stop, thread: Some(thread) })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, handler: Arc<dyn AdminHandler>, stop: Arc<AtomicBool>) {
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= ADMIN_CONNECTIONS_MAX {
            active.fetch_sub(1, Ordering::SeqCst);
            continue; // dropped: closed
        }
        let (handler, active2) = (handler.clone(), active.clone());
        let spawned = std::thread::Builder::new().name("riptide-admin-conn".into()).spawn(move || {
            serve_one(stream, &*handler);
            active2.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn serve_one(mut stream: TcpStream, handler: &dyn AdminHandler) {
    let _ = stream.set_read_timeout(Some(ADMIN_IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(ADMIN_IO_TIMEOUT));
    let response = match read_head(&mut stream) {
        Ok(head) => respond(&head, handler),
        Err(_) => return,
    };
    let _ = stream.write_all(&response);
    let _ = stream.flush();
}

/// Reads up to the end of the request head ("\r\n\r\n"); a request body is not read.
fn read_head(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Ok(head);
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.len() >= ADMIN_REQUEST_HEAD_BYTES_MAX {
            return Ok(head);
        }
    }
}

/// The full HTTP response bytes for a request head.
pub fn respond(head: &[u8], handler: &dyn AdminHandler) -> Vec<u8> {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = match method {
        "GET" | "HEAD" if target.starts_with('/') => {
            let path = target.split('?').next().unwrap_or(target);
            handler.get(path)
        }
        "GET" | "HEAD" => Response::text(400, "bad request target\n"),
        "" => Response::text(400, "bad request\n"),
        _ => Response::text(405, "only GET and HEAD\n"),
    };
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        out.extend_from_slice(response.body.as_bytes());
    }
    out
}

/// The broker's routes over a `Collector`.
pub struct BrokerAdmin {
    pub collector: Arc<super::collect::Collector>,
}

impl AdminHandler for BrokerAdmin {
    fn get(&self, path: &str) -> Response {
        match path {
            "/metrics" => Response { status: 200, content_type: super::exposition::CONTENT_TYPE, body: self.collector.metrics() },
            "/health" => {
                let health = self.collector.health();
                let status = if health.ready { 200 } else { 503 };
                let body = serde_json::to_string(&health).unwrap_or_else(|_| "{}".into()) + "\n";
                Response { status, content_type: "application/json", body }
            }
            "/" => Response::text(200, "riptide admin: /metrics (Prometheus), /health (JSON)\n"),
            _ => Response::text(404, "not found: try /metrics or /health\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl AdminHandler for Echo {
        fn get(&self, path: &str) -> Response {
            match path {
                "/metrics" => Response::text(200, "m 1\n"),
                _ => Response::text(404, "no\n"),
            }
        }
    }

    fn ask(addr: SocketAddr, request: &str) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn admin_serves_routes_and_stops() {
        let server = AdminServer::start(TcpListener::bind("127.0.0.1:0").unwrap(), Arc::new(Echo)).unwrap();
        let addr = server.local_addr();
        let ok = ask(addr, "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Length: 4\r\n") && ok.ends_with("\r\n\r\nm 1\n"), "{ok}");
        let head = ask(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"), "{head}");
        assert!(ask(addr, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(ask(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        assert!(ask(addr, "garbage\r\n\r\n").starts_with("HTTP/1.1 405"));
        // A client that sends nothing does not hold the server: others are served meanwhile.
        let _idle = TcpStream::connect(addr).unwrap();
        assert!(ask(addr, "GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
        drop(server);
        assert!(TcpStream::connect(addr).is_err(), "stopped servers close their port");
    }
}
