//! Reading a header off a connection: bytes past it are kept for the
//! connection, a header split over several reads is waited for, and a
//! connection that ends first is refused.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::*;

#[tokio::test]
async fn the_bytes_after_the_header_are_handed_back() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client
        .write_all(b"PROXY TCP4 203.0.113.9 192.0.2.1 56324 443\r\nGET / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let (h, rest) = read_header(&mut server).await.unwrap();
    assert_eq!(
        h.source,
        Source::Client("203.0.113.9:56324".parse().unwrap())
    );
    assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn a_header_in_pieces_is_waited_for() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    let reader = tokio::spawn(async move { read_header(&mut server).await });
    for piece in ["PRO", "XY TCP4 203.0.", "113.9 192.0.2.1 1 2", "\r", "\n"] {
        client.write_all(piece.as_bytes()).await.unwrap();
        tokio::task::yield_now().await;
    }
    let (h, rest) = reader.await.unwrap().unwrap();
    assert_eq!(h.source, Source::Client("203.0.113.9:1".parse().unwrap()));
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_connection_closed_mid_header_is_refused() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(b"PROXY TCP4 203.0.113.9").await.unwrap();
    drop(client);
    assert_eq!(read_header(&mut server).await, Err(Rejected::Closed));
}

#[tokio::test]
async fn a_request_without_header_is_refused_without_waiting_for_more() {
    let (mut client, mut server) = tokio::io::duplex(1024);
    // The client keeps the connection open: the first bytes decide.
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let read = tokio::time::timeout(Duration::from_secs(5), read_header(&mut server)).await;
    assert_eq!(read, Ok(Err(Rejected::InvalidHeader)));
    drop(client);
}

#[tokio::test]
async fn a_header_of_exactly_the_bound_is_read_whole() {
    let (mut client, mut server) = tokio::io::duplex(2 * MAX_HEADER);
    // A v2 header announcing the most that fits, followed by more data.
    let mut head = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    head.extend_from_slice(&((MAX_HEADER - 16) as u16).to_be_bytes());
    client.write_all(&head).await.unwrap();
    client.write_all(&vec![0u8; MAX_HEADER]).await.unwrap();
    // The header is complete at exactly MAX_HEADER bytes, nothing past it read.
    let (h, rest) = read_header(&mut server).await.unwrap();
    assert_eq!(h.len, MAX_HEADER);
    assert_eq!(rest.len(), 0);
}
