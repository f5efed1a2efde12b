//! HTTP answers: hyper parses the protocol; lazyroot decides what a status, a
//! `Content-Length` and a body mean (limit, truncation, low-speed limit, deadline). A local
//! server sends random and mutated answers; every transfer ends with exactly one verdict,
//! never more than the limit, and a complete body only when it has the announced length.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use lazyroot::remote::download::http::{get, Get, Limits, Msg, Pool};
use lazyroot::remote::download::Endpoint;
use proptest::prelude::*;
use tokio::sync::mpsc;

use super::*;

const LIMIT: u64 = 1000;

const SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: application/x-cvmfs\r\n\r\nhello world",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nhello world",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nshort",
    b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
    b"HTTP/1.0 200 OK\r\n\r\nold server",
];

/// The one `Content-Length` of `answer`'s head, when it has exactly one, parseable, and no
/// `Transfer-Encoding`: then a complete body must be exactly that long.
fn announced_length(answer: &[u8]) -> Option<u64> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let mut lengths = Vec::new();
    for line in head.split("\r\n").skip(1) {
        let (name, value) = line.split_once(':')?;
        match name {
            "content-length" => lengths.push(value.trim().parse::<u64>().ok()?),
            "transfer-encoding" => return None,
            _ => {}
        }
    }
    (lengths.len() == 1).then(|| lengths[0])
}

/// Serves `answer` to one connection: reads the request head, writes, closes.
fn serve_once(answer: Vec<u8>) -> (u16, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        // The client may hang up early (a refused head or length); that is its right.
        let _ = s.write_all(&answer);
    });
    (port, server)
}

fn check(rt: &tokio::runtime::Runtime, answer: Vec<u8>) -> Result<Verdict, TestCaseError> {
    let announced = announced_length(&answer);
    let (port, server) = serve_once(answer);
    let g = Get {
        via: Endpoint {
            host: "127.0.0.1".into(),
            port,
        },
        uri: "/data/00/x".into(),
        host_header: format!("127.0.0.1:{port}"),
        no_cache: false,
        limit: LIMIT,
        limits: Limits {
            connect_timeout: Duration::from_secs(2),
            low_speed_limit: 1,
            low_speed_time: Duration::from_secs(2),
            deadline: Duration::from_secs(4),
        },
    };
    let msgs = rt.block_on(async {
        let pool = Pool::default();
        let (tx, mut rx) = mpsc::channel(4);
        let collect = async {
            let mut msgs = Vec::new();
            while let Some(m) = rx.recv().await {
                msgs.push(m);
            }
            msgs
        };
        let ((), msgs) = tokio::join!(get(&pool, g, tx), collect);
        msgs
    });
    server.join().unwrap();
    let (last, data) = msgs
        .split_last()
        .expect("a transfer always ends with a verdict");
    let mut got = 0u64;
    for m in data {
        match m {
            Msg::Data(d) => got += d.len() as u64,
            other => prop_assert!(false, "{other:?} before the end"),
        }
    }
    prop_assert!(got <= LIMIT, "{got} bytes passed a limit of {LIMIT}");
    match last {
        Msg::End => {
            if let Some(n) = announced {
                prop_assert_eq!(got, n, "a body shorter or longer than announced ended well");
            }
            Ok(Verdict::Accepted)
        }
        Msg::Failed(_) => Ok(Verdict::Caught),
        Msg::Data(_) => {
            prop_assert!(false, "the transfer ended without a verdict");
            unreachable!()
        }
    }
}

#[test]
fn random_and_mutated_answers_end_in_one_bounded_verdict() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answers = prop_oneof![
        1 => random_bytes(300),
        1 => random_bytes(300).prop_map(|b| [b"HTTP/1.1 200 OK\r\n".to_vec(), b].concat()),
        6 => (0..SEEDS.len(), mutations()).prop_map(|(i, ms)| apply(SEEDS[i], &ms)),
    ];
    fuzz("http", 400, answers, |a| check(&rt, a));
}
