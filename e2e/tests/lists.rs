//! Lists that never grow a reply: `user list` over an organization of 2,500 members,
//! fetched by the CLI page by page and printed whole as text, JSON and JSON lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use compartment_e2e::{each_store, member_table, Daemon, DaemonOptions, InProcess, ROOT};
use compartmentctl::wire::{
    ErrorKind, Invitation, MemberList, Request, Role, UserInviteParams, UserListParams,
};
use compartmentctl::ClientError;

/// The admin `create_acme` invites, plus `m0000@example.com` … `m2498@example.com`.
const MEMBERS: usize = 2_500;

/// A daemon with `acme` of [`MEMBERS`] invited members, invited over one library
/// connection (as the test process, a superuser), and the list as the library reads it.
fn acme_of_2500(options: DaemonOptions) -> (InProcess, MemberList) {
    let d = Daemon::in_process(options);
    d.create_acme();
    let mut client = d.client();
    for i in 0..MEMBERS - 1 {
        let _: Invitation = client
            .call(&Request::UserInvite(UserInviteParams {
                org: Some("acme".into()),
                email: format!("m{i:04}@example.com"),
                role: Role::Viewer,
                expires_in: None,
                resend: false,
                unix_user: None,
                access_until: None,
            }))
            .unwrap();
    }
    let list = d.members("acme");
    // What was invited, in e-mail order, before any of it is compared with the CLI.
    let emails: Vec<String> = list.members.iter().map(|m| m.email.clone()).collect();
    let mut expected = vec!["admin@example.com".to_owned()];
    expected.extend((0..MEMBERS - 1).map(|i| format!("m{i:04}@example.com")));
    assert_eq!(emails, expected);
    (d, list)
}

fn table_of(list: &MemberList) -> String {
    let rows: Vec<[String; 5]> = list
        .members
        .iter()
        .map(|m| {
            [
                m.email.clone(),
                m.role.to_string(),
                m.status.to_string(),
                m.unix_user.clone().unwrap_or_else(|| "-".into()),
                m.expires_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let rows: Vec<[&str; 5]> = rows
        .iter()
        .map(|r| r.each_ref().map(String::as_str))
        .collect();
    member_table(&rows)
}

#[test]
fn an_organization_of_2500_lists_whole_in_every_format() {
    for options in each_store("an_organization_of_2500_lists_whole_in_every_format") {
        lists_whole(acme_of_2500(options));
    }
}

fn lists_whole((d, list): (InProcess, MemberList)) {
    let text = d.ctl(ROOT, &["user", "list", "--org", "acme"]);
    text.assert_success();
    assert_eq!(text.stdout, table_of(&list));
    assert_eq!(text.stderr, "");

    let json = d.ctl(ROOT, &["--output", "json", "user", "list", "--org", "acme"]);
    json.assert_success();
    assert_eq!(json.stdout, serde_json::to_string(&list).unwrap() + "\n");
    let parsed: MemberList = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(parsed, list);

    let jsonl = d.ctl(
        ROOT,
        &["--output", "jsonl", "user", "list", "--org", "acme"],
    );
    jsonl.assert_success();
    let expected: String = list
        .members
        .iter()
        .map(|m| serde_json::to_string(m).unwrap() + "\n")
        .collect();
    assert_eq!(jsonl.stdout, expected);

    // One page: the third thousand is the last five hundred.
    let page = d.ctl(
        ROOT,
        &[
            "user",
            "list",
            "--org",
            "acme",
            "--page",
            "3",
            "--per-page",
            "1000",
        ],
    );
    page.assert_success();
    let last = MemberList {
        members: list.members[2000..].to_vec(),
        ..list.clone()
    };
    assert_eq!(page.stdout, table_of(&last));

    // Nobody's invitation has lapsed: the expired filter prints the header alone.
    let expired = d.ctl(
        ROOT,
        &["user", "list", "--org", "acme", "--status", "expired"],
    );
    expired.assert_success();
    assert_eq!(expired.stdout, "EMAIL  ROLE  STATUS  UNIX USER  EXPIRES\n");
    let invited = d.ctl(
        ROOT,
        &[
            "--output", "jsonl", "user", "list", "--org", "acme", "--status", "invited",
        ],
    );
    assert_eq!(invited.stdout.lines().count(), MEMBERS);
}

#[test]
fn a_client_that_names_no_limit_gets_the_first_hundred_and_a_cursor() {
    for options in each_store("a_client_that_names_no_limit_gets_the_first_hundred_and_a_cursor") {
        first_hundred_and_a_cursor(acme_of_2500(options));
    }
}

fn first_hundred_and_a_cursor((d, list): (InProcess, MemberList)) {
    let mut client = d.client();
    let first: MemberList = client
        .call(&Request::UserList(UserListParams {
            org: Some("acme".into()),
            ..UserListParams::default()
        }))
        .unwrap();
    assert_eq!(first.members, list.members[..100]);
    let next = first.next.unwrap();
    let second: MemberList = client
        .call(&Request::UserList(UserListParams {
            org: Some("acme".into()),
            after: Some(next),
            ..UserListParams::default()
        }))
        .unwrap();
    assert_eq!(second.members, list.members[100..200]);
    // Out-of-range limits and forged cursors are refused, and the connection lives on.
    for params in [
        UserListParams {
            limit: Some(1001),
            ..UserListParams::default()
        },
        UserListParams {
            after: Some("%%%".into()),
            ..UserListParams::default()
        },
    ] {
        let err = client
            .call::<MemberList>(&Request::UserList(UserListParams {
                org: Some("acme".into()),
                ..params
            }))
            .unwrap_err();
        match err {
            ClientError::Rpc(error) => assert_eq!(error.kind(), ErrorKind::BadRequest),
            other => panic!("{other:?}"),
        }
    }
    let out = d.ctl(ROOT, &["user", "list", "--org", "acme", "--per-page", "2"]);
    assert_eq!(
        out.stdout,
        table_of(&MemberList {
            members: list.members[..2].to_vec(),
            ..list
        })
    );
}
