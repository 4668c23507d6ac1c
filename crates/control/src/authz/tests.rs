//! The exhaustive table of `can()`: every role × resource kind × action, with
//! the expected answer written out by hand. `ok` = allowed, `404`/`403` = the
//! denial. Columns: no grant, viewer, editor, owner.

use super::*;
use tandem_protocol::chat::ParticipantsMay;

const TABLE: &str = "
workspace  read     404 ok  ok  ok
workspace  connect  404 403 403 403
workspace  update   404 403 ok  ok
workspace  create   404 403 ok  ok
workspace  delete   404 403 403 ok
workspace  members  404 403 403 ok
workspace  rename   404 403 ok  ok
workspace  star     404 403 403 403
workspace  archive  404 403 403 403
project    read     404 ok  ok  ok
project    connect  404 403 403 403
project    update   404 403 ok  ok
project    create   404 403 ok  ok
project    delete   404 403 403 ok
project    members  404 403 403 ok
project    rename   404 403 ok  ok
project    star     404 403 403 403
project    archive  404 403 403 403
document   read     404 ok  ok  ok
document   connect  404 ok  ok  ok
document   update   404 403 ok  ok
document   create   404 403 403 403
document   delete   404 403 ok  ok
document   members  404 403 403 ok
document   rename   404 403 ok  ok
document   star     404 403 403 403
document   archive  404 403 403 403
diagram    read     404 ok  ok  ok
diagram    connect  404 ok  ok  ok
diagram    update   404 403 ok  ok
diagram    create   404 403 403 403
diagram    delete   404 403 ok  ok
diagram    members  404 403 403 ok
diagram    rename   404 403 ok  ok
diagram    star     404 403 403 403
diagram    archive  404 403 403 403
task       read     404 ok  ok  ok
task       connect  404 ok  ok  ok
task       update   404 403 ok  ok
task       create   404 403 403 403
task       delete   404 403 ok  ok
task       members  404 403 403 403
task       rename   404 403 ok  ok
task       star     404 403 403 403
task       archive  404 403 403 403
";

fn kind(s: &str) -> ResourceKind {
    match s {
        "workspace" => ResourceKind::Workspace,
        "project" => ResourceKind::Project,
        "document" => ResourceKind::Document,
        "diagram" => ResourceKind::Diagram,
        "task" => ResourceKind::Task,
        other => panic!("unknown kind {other}"),
    }
}

fn action(s: &str) -> Action {
    match s {
        "read" => Action::Read,
        "connect" => Action::Connect,
        "update" => Action::Update,
        "create" => Action::CreateChild,
        "delete" => Action::Delete,
        "members" => Action::ManageMembers,
        "rename" => Action::Rename,
        "star" => Action::Star,
        "archive" => Action::Archive,
        other => panic!("unknown action {other}"),
    }
}

fn expected(cell: &str, role: Option<Role>) -> Decision {
    match (cell, role) {
        ("404", _) => Decision::Deny(Denial::NotFound),
        ("403", _) => Decision::Deny(Denial::Forbidden),
        ("ok", Some(r)) => Decision::Allow(r),
        other => panic!("bad cell {other:?}"),
    }
}

fn actor() -> Actor {
    Actor {
        user_id: "u1".into(),
        org_id: "org-a".into(),
        org_role: OrgRole::Member,
    }
}

/// A team workspace of another org: the actor gets nothing from it.
fn foreign_workspace() -> WorkspaceFacts {
    WorkspaceFacts {
        kind: WorkspaceType::Team,
        org_id: "org-b".into(),
        owner_id: None,
    }
}

fn rows() -> Vec<(ResourceKind, Action, [String; 4])> {
    let rows: Vec<_> = TABLE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(cols.len(), 6, "row {l:?}");
            (
                kind(cols[0]),
                action(cols[1]),
                [cols[2], cols[3], cols[4], cols[5]].map(String::from),
            )
        })
        .collect();
    // The table really is exhaustive: every kind × action exactly once.
    assert_eq!(rows.len(), ResourceKind::CHAIN.len() * Action::ALL.len());
    for k in ResourceKind::CHAIN {
        for a in Action::ALL {
            assert_eq!(rows.iter().filter(|r| r.0 == k && r.1 == a).count(), 1);
        }
    }
    rows
}

const ROLES: [Option<Role>; 4] = [
    None,
    Some(Role::Viewer),
    Some(Role::Editor),
    Some(Role::Owner),
];

#[test]
fn table_with_grant_on_the_thing_itself() {
    for (k, a, cells) in rows() {
        for (cell, role) in cells.iter().zip(ROLES) {
            let facts: Facts = ChainFacts {
                workspace: foreign_workspace(),
                grants: role.map(|r| (k.level(), r)).into_iter().collect(),
            }
            .into();
            assert_eq!(
                can(&actor(), a, k, &facts),
                expected(cell, role),
                "{k:?} {a:?} with {role:?} granted on the thing"
            );
        }
    }
}

#[test]
fn table_with_grant_inherited_from_workspace_membership() {
    for (k, a, cells) in rows() {
        for (cell, role) in cells.iter().zip(ROLES) {
            let facts: Facts = ChainFacts {
                workspace: foreign_workspace(),
                grants: role.map(|r| (Level::Workspace, r)).into_iter().collect(),
            }
            .into();
            assert_eq!(
                can(&actor(), a, k, &facts),
                expected(cell, role),
                "{k:?} {a:?} with {role:?} granted on the workspace"
            );
        }
    }
}

#[test]
fn table_with_role_given_by_the_workspace_itself() {
    // Column → how the actor gets that role without any explicit grant.
    let member = actor();
    let org_owner = Actor {
        org_role: OrgRole::Owner,
        ..actor()
    };
    let team = WorkspaceFacts {
        kind: WorkspaceType::Team,
        org_id: "org-a".into(),
        owner_id: None,
    };
    let personal = WorkspaceFacts {
        kind: WorkspaceType::Personal,
        org_id: "org-a".into(),
        owner_id: Some("u1".into()),
    };
    let someone_elses = WorkspaceFacts {
        owner_id: Some("u2".into()),
        ..personal.clone()
    };
    for (k, a, cells) in rows() {
        let cases = [
            (&cells[0], None, &member, &someone_elses),
            (&cells[0], None, &member, &foreign_workspace()),
            (&cells[2], Some(Role::Editor), &member, &team),
            (&cells[3], Some(Role::Owner), &org_owner, &team),
            (&cells[3], Some(Role::Owner), &member, &personal),
        ];
        for (cell, role, who, ws) in cases {
            let facts: Facts = ChainFacts {
                workspace: ws.clone(),
                grants: vec![],
            }
            .into();
            assert_eq!(
                can(who, a, k, &facts),
                expected(cell, role),
                "{k:?} {a:?} as {who:?} in {ws:?}"
            );
        }
    }
}

#[test]
fn grants_below_a_thing_do_not_reach_up() {
    let facts: Facts = ChainFacts {
        workspace: foreign_workspace(),
        grants: vec![(Level::Resource, Role::Owner)],
    }
    .into();
    let a = actor();
    assert_eq!(
        can(&a, Action::Read, ResourceKind::Project, &facts),
        Decision::Deny(Denial::NotFound)
    );
    assert_eq!(
        can(&a, Action::Read, ResourceKind::Workspace, &facts),
        Decision::Deny(Denial::NotFound)
    );
    assert_eq!(
        can(&a, Action::Delete, ResourceKind::Document, &facts),
        Decision::Allow(Role::Owner)
    );
}

#[test]
fn highest_grant_along_the_chain_wins() {
    let facts = ChainFacts {
        workspace: WorkspaceFacts {
            kind: WorkspaceType::Team,
            org_id: "org-a".into(),
            owner_id: None,
        },
        grants: vec![
            (Level::Project, Role::Viewer),
            (Level::Resource, Role::Owner),
        ],
    };
    // Team member (editor) + project viewer → editor on the project.
    assert_eq!(
        effective_role(&actor(), ResourceKind::Project, &facts),
        Some(Role::Editor)
    );
    // + resource owner → owner on the document.
    assert_eq!(
        effective_role(&actor(), ResourceKind::Document, &facts),
        Some(Role::Owner)
    );
}

/// Plan 003's permission matrix, written out. Columns: no relation, reading
/// through a share link, participant (owner allows nothing extra),
/// participant (owner allows rename, star and archive), owner.
const CONVERSATION_TABLE: &str = "
read     404 ok  ok  ok  ok
connect  404 403 403 403 403
update   404 403 403 403 ok
create   404 403 ok  ok  ok
delete   404 403 403 403 ok
members  404 403 403 403 ok
rename   404 403 403 ok  ok
star     404 403 403 ok  ok
archive  404 403 403 ok  ok
";

fn conversation_facts(relation: Option<Role>, may: ParticipantsMay) -> Facts {
    ConversationFacts {
        relation,
        participants_may: may,
    }
    .into()
}

const ALL_RIGHTS: ParticipantsMay = ParticipantsMay {
    rename: true,
    star: true,
    archive: true,
};

#[test]
fn conversation_table() {
    let columns = [
        (None, ParticipantsMay::default()),
        (Some(Role::Viewer), ALL_RIGHTS),
        (Some(Role::Editor), ParticipantsMay::default()),
        (Some(Role::Editor), ALL_RIGHTS),
        (Some(Role::Owner), ParticipantsMay::default()),
    ];
    let rows: Vec<Vec<&str>> = CONVERSATION_TABLE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), Action::ALL.len());
    for a in Action::ALL {
        let n = rows.iter().filter(|r| action(r[0]) == a).count();
        assert_eq!(n, 1, "{a:?} must have exactly one row");
    }
    for row in rows {
        let a = action(row[0]);
        for (cell, (relation, may)) in row[1..].iter().zip(columns) {
            let facts = conversation_facts(relation, may);
            assert_eq!(
                can(&actor(), a, ResourceKind::Conversation, &facts),
                expected(cell, relation),
                "conversation {a:?} as {relation:?} with {may:?}"
            );
        }
    }
}

#[test]
fn each_participant_right_is_separate() {
    let cases = [
        (
            Action::Rename,
            ParticipantsMay {
                rename: true,
                ..Default::default()
            },
        ),
        (
            Action::Star,
            ParticipantsMay {
                star: true,
                ..Default::default()
            },
        ),
        (
            Action::Archive,
            ParticipantsMay {
                archive: true,
                ..Default::default()
            },
        ),
    ];
    for (granted, may) in cases {
        let facts = conversation_facts(Some(Role::Editor), may);
        for a in [Action::Rename, Action::Star, Action::Archive] {
            let want = if a == granted {
                Decision::Allow(Role::Editor)
            } else {
                Decision::Deny(Denial::Forbidden)
            };
            assert_eq!(
                can(&actor(), a, ResourceKind::Conversation, &facts),
                want,
                "{may:?} {a:?}"
            );
        }
    }
}

#[test]
fn facts_of_the_wrong_shape_deny() {
    let chain: Facts = ChainFacts {
        workspace: foreign_workspace(),
        grants: vec![(Level::Workspace, Role::Owner)],
    }
    .into();
    let convo = conversation_facts(Some(Role::Owner), ALL_RIGHTS);
    for a in Action::ALL {
        assert_eq!(
            can(&actor(), a, ResourceKind::Conversation, &chain),
            Decision::Deny(Denial::NotFound)
        );
        for k in ResourceKind::CHAIN {
            assert_eq!(
                can(&actor(), a, k, &convo),
                Decision::Deny(Denial::NotFound)
            );
        }
    }
}

/// Orgs: columns are outsider, member, owner.
const ORG_TABLE: &str = "
read     404 ok  ok
connect  404 403 403
update   404 403 ok
create   404 403 403
delete   404 403 403
members  404 403 ok
rename   404 403 ok
star     404 403 403
archive  404 403 403
";

#[test]
fn org_table() {
    let facts = OrgFacts {
        org_id: "org-a".into(),
    };
    let outsider = Actor {
        org_id: "org-b".into(),
        ..actor()
    };
    let owner = Actor {
        org_role: OrgRole::Owner,
        ..actor()
    };
    let rows: Vec<&str> = ORG_TABLE.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(rows.len(), Action::ALL.len());
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        let a = action(cols[0]);
        for (who, cell, role) in [
            (&outsider, cols[1], None),
            (&actor(), cols[2], Some(Role::Editor)),
            (&owner, cols[3], Some(Role::Owner)),
        ] {
            assert_eq!(can_org(who, a, &facts), expected(cell, role), "{row}");
        }
        // Org facts never answer for other kinds, nor other facts for orgs.
        let chain: Facts = ChainFacts {
            workspace: foreign_workspace(),
            grants: vec![(Level::Workspace, Role::Owner)],
        }
        .into();
        assert_eq!(
            can(&owner, a, ResourceKind::Org, &chain),
            Decision::Deny(Denial::NotFound)
        );
        assert_eq!(
            can(&owner, a, ResourceKind::Workspace, &facts.clone().into()),
            Decision::Deny(Denial::NotFound)
        );
    }
}

/// The admin policy (plan 001, phase 7): every role × every admin action.
/// Columns: outsider, viewer, editor, owner, then the same four as an
/// instance admin.
const ADMIN_TABLE: &str = "
view        404 403 ok  ok    404 403 ok  ok
members     404 403 403 ok    404 403 403 ok
guests      404 403 403 ok    404 403 403 ok
settings    404 403 403 ok    404 403 403 ok
transfer    404 403 403 ok    404 403 403 ok
audit       404 403 403 ok    404 403 403 ok
extensions  404 403 403 ok    404 403 403 ok
webhooks    404 403 403 ok    404 403 403 ok
instance    404 403 403 403   ok  ok  ok  ok
";

fn admin_action(s: &str) -> AdminAction {
    match s {
        "view" => AdminAction::View,
        "members" => AdminAction::ManageMembers,
        "guests" => AdminAction::ManageGuestAccess,
        "settings" => AdminAction::ManageSettings,
        "transfer" => AdminAction::TransferOwnership,
        "audit" => AdminAction::ReadAudit,
        "extensions" => AdminAction::ManageExtensions,
        "webhooks" => AdminAction::ManageWebhooks,
        "instance" => AdminAction::ManageInstance,
        other => panic!("unknown admin action {other}"),
    }
}

#[test]
fn admin_table() {
    let rows: Vec<&str> = ADMIN_TABLE
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(rows.len(), AdminAction::ALL.len());
    let mut seen = std::collections::HashSet::new();
    for row in rows {
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols.len(), 9, "{row}");
        let a = admin_action(cols[0]);
        assert!(seen.insert(a), "{row} twice");
        let roles = [
            None,
            Some(Role::Viewer),
            Some(Role::Editor),
            Some(Role::Owner),
        ];
        for (i, instance_admin) in [false, true].into_iter().enumerate() {
            for (j, role) in roles.into_iter().enumerate() {
                let facts = AdminFacts {
                    role,
                    instance_admin,
                };
                let want = expected(cols[1 + i * 4 + j], Some(role.unwrap_or(Role::Owner)));
                assert_eq!(can_admin(a, &facts), want, "{row} {facts:?}");
            }
        }
    }
}

#[test]
fn admin_roles_come_from_the_org_and_the_workspace() {
    let member = actor();
    let owner = Actor {
        org_role: OrgRole::Owner,
        ..actor()
    };
    assert_eq!(
        AdminFacts::for_org(&member, "org-a").role,
        Some(Role::Editor)
    );
    assert_eq!(AdminFacts::for_org(&owner, "org-a").role, Some(Role::Owner));
    assert_eq!(AdminFacts::for_org(&owner, "org-b").role, None);
    // A guest with a viewer grant on a foreign workspace is a viewer there:
    // they cannot enter its admin area, but it exists for them.
    let guest = ChainFacts {
        workspace: foreign_workspace(),
        grants: vec![(Level::Workspace, Role::Viewer)],
    };
    let f = AdminFacts::for_workspace(&member, &guest);
    assert_eq!(f.role, Some(Role::Viewer));
    assert_eq!(
        can_admin(AdminAction::View, &f),
        Decision::Deny(Denial::Forbidden)
    );
    let none = ChainFacts {
        workspace: foreign_workspace(),
        grants: vec![],
    };
    assert_eq!(
        can_admin(
            AdminAction::View,
            &AdminFacts::for_workspace(&member, &none)
        ),
        Decision::Deny(Denial::NotFound)
    );
}
