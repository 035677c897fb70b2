//! Groups: membership changes as system entries, roles, and a message fanned
//! out to 1,024 members with their delivered receipts.

use std::time::Duration;

use client::{system_group_info, Client, Event};
use protocol::{Conversation, ErrorCode, GroupId, Payload, ReceiptKind, Role, UserId};

use super::{all_modes, connect, deliveries, no_delivery, wait_for, within, Cluster, Mode};

async fn group_ok(client: &mut Client, request: u64) -> (GroupId, u64) {
    wait_for(client, |event| match event {
        Event::GroupOk(ok) if ok.request == request => Some((ok.group, ok.version)),
        Event::Error(e) if e.reference == request => panic!("refused: {e:?}"),
        _ => None,
    })
    .await
}

async fn refused(client: &mut Client, request: u64) -> ErrorCode {
    wait_for(client, |event| match event {
        Event::Error(e) if e.reference == request => Some(e.code),
        Event::GroupOk(ok) if ok.request == request => panic!("accepted: {ok:?}"),
        _ => None,
    })
    .await
}

all_modes!(membership_changes_are_ordered_system_entries_and_roles_are_enforced);
async fn membership_changes_are_ordered_system_entries_and_roles_are_enforced(mode: Mode) {
    let cluster = Cluster::start(mode, "");
    let mut a = connect(&cluster, 1, 1).await;
    let mut b = connect(&cluster, 2, 1).await;
    let mut c = connect(&cluster, 3, 1).await;
    let request = a.group_create("team", &[UserId(2)]).await.unwrap();
    let (group, version) = group_ok(&mut a, request).await;
    assert_eq!(version, 1);
    // Everyone in the group, creator included, gets the system entry.
    for client in [&mut a, &mut b] {
        let entry = deliveries(client, 1).await.remove(0);
        assert_eq!(entry.conversation, Conversation::Group(group));
        let info = system_group_info(&entry).expect("a system entry");
        assert_eq!((info.request, info.group, info.version), (0, group, 1));
        let members: Vec<_> = info.members.iter().map(|m| (m.user, m.role)).collect();
        assert_eq!(members.len(), 2);
        assert!(members.contains(&(UserId(1), Role::Admin)) && members.contains(&(UserId(2), Role::Member)));
    }
    // Only admins change membership; outsiders cannot send.
    let request = b.group_add(group, &[UserId(3)]).await.unwrap();
    assert_eq!(refused(&mut b, request).await, ErrorCode::NOT_ADMIN);
    let id = c.send(Conversation::Group(group), Payload::new(&b"let me in"[..]).unwrap()).await.unwrap();
    let code = wait_for(&mut c, |event| match event {
        Event::SendFailed { client_id, code, .. } if *client_id == id => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(code, ErrorCode::NOT_A_MEMBER);
    let request = a.group_add(group, &[UserId(3)]).await.unwrap();
    assert_eq!(group_ok(&mut a, request).await.1, 2);
    assert_eq!(system_group_info(&deliveries(&mut c, 1).await[0]).unwrap().version, 2);
    // A message, then B removed: B gets the message and its removal, nothing after.
    let id = c.send(Conversation::Group(group), Payload::new(&b"hi all"[..]).unwrap()).await.unwrap();
    wait_for(&mut c, |event| {
        matches!(event, Event::Sent { client_id, .. } if *client_id == id).then_some(())
    })
    .await;
    let request = a.group_remove(group, &[UserId(2)]).await.unwrap();
    group_ok(&mut a, request).await;
    let on_b = deliveries(&mut b, 3).await;
    assert!(system_group_info(&on_b[0]).is_some(), "the add");
    assert_eq!(on_b[1].payload.bytes().as_ref(), b"hi all");
    let removal = system_group_info(&on_b[2]).unwrap();
    assert!(removal.members.iter().all(|m| m.user != UserId(2)));
    a.send(Conversation::Group(group), Payload::new(&b"after"[..]).unwrap()).await.unwrap();
    no_delivery(&mut b, Duration::from_millis(300)).await;
    // GROUP_GET answers members only.
    let request = c.group_get(group).await.unwrap();
    let info = wait_for(&mut c, |event| match event {
        Event::GroupInfo(info) if info.request == request => Some(info.clone()),
        _ => None,
    })
    .await;
    assert_eq!(info.version, 3);
    let request = b.group_get(group).await.unwrap();
    assert_eq!(refused(&mut b, request).await, ErrorCode::NOT_A_MEMBER);
}

all_modes!(a_message_reaches_1024_members_and_their_receipts_reach_the_sender);
async fn a_message_reaches_1024_members_and_their_receipts_reach_the_sender(mode: Mode) {
    const MEMBERS: u64 = 1024;
    let cluster = Cluster::start(
        mode,
        "[limits]\nconnections_per_ip_per_sec = 5000\nconnections_per_ip_burst = 5000\n",
    );
    let mut creator = connect(&cluster, 1, 1).await;
    let mut members = Vec::new();
    for user in 2..=MEMBERS {
        members.push(within(Client::connect(super::client_config(&cluster, user, 1, 0))).await.unwrap());
    }
    let others: Vec<UserId> = (2..=MEMBERS).map(UserId).collect();
    let request = creator.group_create("everyone", &others).await.unwrap();
    let (group, _) = group_ok(&mut creator, request).await;
    let frames_before = cluster.gateway.metric("gateway_frames_out_total{kind=\"DELIVER\"}");
    let id = creator.send(Conversation::Group(group), Payload::new(vec![7u8; 1000]).unwrap()).await.unwrap();
    let conv_seq = wait_for(&mut creator, |event| match event {
        Event::Sent { client_id, conv_seq, .. } if *client_id == id => Some(*conv_seq),
        _ => None,
    })
    .await;
    // Every member gets the system entry then the message (and acks both).
    let tasks: Vec<_> = members
        .into_iter()
        .map(|mut member| {
            tokio::spawn(async move {
                let got = deliveries(&mut member, 2).await;
                assert!(system_group_info(&got[0]).is_some());
                assert_eq!(got[1].payload.bytes().len(), 1000);
                member
            })
        })
        .collect();
    let mut members = Vec::new();
    for task in tasks {
        members.push(within(task).await.unwrap());
    }
    let frames = cluster.gateway.metric("gateway_frames_out_total{kind=\"DELIVER\"}") - frames_before;
    assert!(frames >= (MEMBERS - 1) as f64, "{frames} live DELIVERs");
    // Each member's ack moves its delivered cursor: the sender hears from all.
    let mut delivered = std::collections::HashSet::new();
    while delivered.len() < (MEMBERS - 1) as usize {
        let user = wait_for(&mut creator, |event| match event {
            Event::Receipt(r) if r.kind == ReceiptKind::Delivered && r.up_to >= conv_seq => Some(r.user),
            _ => None,
        })
        .await;
        delivered.insert(user);
    }
    drop(members);
}
