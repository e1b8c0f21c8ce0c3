mod common;
use common::*;
use wspeer::*;

#[test]
fn text_and_binary_round_trip() {
    let mut server = server();
    let (mut client, id) = connect(&mut server);
    client.send_text("hello").unwrap();
    client.put_packet(&[1, 2, 3]).unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "two packets",
        |_, _, ev| {
            ev.iter()
                .filter(|e| matches!(e, ServerEvent::DataReceived { .. }))
                .count()
                == 2
        },
    );
    let peer = server.get_peer(id).unwrap();
    let a = peer.recv().unwrap();
    assert_eq!((a.as_text(), a.is_text()), (Some("hello"), true));
    let b = peer.recv().unwrap();
    assert_eq!((b.data(), b.is_text()), (&[1u8, 2, 3][..], false));
    peer.send_text("back").unwrap();
    run_clients_until(&mut [&mut client], "reply", |c| {
        c[0].get_available_packet_count() == 1
    });
    assert_eq!(client.get_packet().unwrap(), b"back");
    assert!(client.was_string_packet());
    client.close(1000, "bye").unwrap();
    let mut events = Vec::new();
    run_until(
        &mut server,
        &mut [&mut client],
        &mut events,
        "closed",
        |_, c, ev| {
            c[0].get_ready_state() == State::Closed
                && ev
                    .iter()
                    .any(|e| matches!(e, ServerEvent::ClientDisconnected { .. }))
        },
    );
    assert_eq!(client.get_close_code(), 1000);
    assert_eq!(client.get_close_reason(), "bye");
    assert!(events.contains(&ServerEvent::ClientCloseRequest {
        id,
        code: 1000,
        reason: "bye".into()
    }));
    assert!(events.contains(&ServerEvent::ClientDisconnected {
        id,
        was_clean: true
    }));
}
