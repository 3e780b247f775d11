use super::*;

const H: Millis = 3_600_000;
const T0: Millis = 1_790_000_000_000;

fn plan(deadline: Millis) -> Rectification {
    Rectification {
        responsible_unit: "阳光养老院".into(),
        responsible_person: "王主任".into(),
        measures: "更换老化线缆".into(),
        funds: "2000 元".into(),
        deadline,
        contingency_plan: "期间每日巡查".into(),
    }
}

#[test]
fn offered_steps_follow_status_grade_and_role() {
    let p = Policy::default();
    let t = Ticket::opened(Grade::General, true);
    assert_eq!(offered(&t, Role::Duty, &p, T0), ["register"]);
    assert_eq!(offered(&t, Role::Inspector, &p, T0), Vec::<&str>::new());
    let registered = Ticket {
        status: Status::Registered,
        ..t.clone()
    };
    assert_eq!(
        offered(&registered, Role::SiteManager, &p, T0),
        ["start_rectification"]
    );
    let major = Ticket {
        grade: Grade::Major,
        ..registered.clone()
    };
    assert_eq!(offered(&major, Role::Inspector, &p, T0), ["list"]);
    assert_eq!(
        offered(&major, Role::SiteManager, &p, T0),
        Vec::<&str>::new()
    );
    let reviewed = Ticket {
        status: Status::PendingReview,
        reviewed: true,
        rectified_at: Some(T0),
        ..t.clone()
    };
    // Offered even before the data proves the fix: the refusal says why.
    // A passed review leaves the ticket 待复查, so it may be reviewed again.
    assert_eq!(
        offered(&reviewed, Role::SiteManager, &p, T0),
        ["review", "close"]
    );
    let pending = Ticket {
        reviewed: false,
        ..reviewed
    };
    assert_eq!(offered(&pending, Role::Inspector, &p, T0), ["review"]);
    assert_eq!(offered(&pending, Role::Admin, &p, T0), Vec::<&str>::new());
}

fn ok(now: Millis) -> DataProof {
    DataProof {
        normal_since: Some(now),
    }
}

#[test]
fn a_general_hazard_walks_the_loop_and_closes_only_after_the_data_period() {
    let p = Policy::default();
    let t = Ticket::opened(Grade::General, true);
    let t = apply(
        &t,
        &Action::Register {
            grade: Grade::General,
        },
        Role::Duty,
        ok(T0),
        &p,
        T0,
    )
    .unwrap();
    assert_eq!(t.status, Status::Registered);
    let t = apply(
        &t,
        &Action::StartRectification {
            plan: plan(T0 + 240 * H),
        },
        Role::SiteManager,
        ok(T0),
        &p,
        T0,
    )
    .unwrap();
    assert_eq!(
        (t.status, t.deadline),
        (Status::Rectifying, Some(T0 + 240 * H))
    );
    let t = apply(
        &t,
        &Action::ReportRectified,
        Role::SiteManager,
        ok(T0),
        &p,
        T0 + 10 * H,
    )
    .unwrap();
    // Closing before review is refused.
    assert!(matches!(
        apply(
            &t,
            &Action::Close,
            Role::SiteManager,
            ok(T0),
            &p,
            T0 + 90 * H
        ),
        Err(Refusal::WrongStatus { .. })
    ));
    let t = apply(
        &t,
        &Action::Review { passed: true },
        Role::SiteManager,
        ok(T0),
        &p,
        T0 + 11 * H,
    )
    .unwrap();
    // Reviewed, but the data has been normal only 20 h since the report.
    let early = apply(
        &t,
        &Action::Close,
        Role::SiteManager,
        ok(T0 + 10 * H),
        &p,
        T0 + 30 * H,
    );
    assert!(
        matches!(early, Err(Refusal::DataNotProven { .. })),
        "{early:?}"
    );
    let live = apply(
        &t,
        &Action::Close,
        Role::SiteManager,
        DataProof { normal_since: None },
        &p,
        T0 + 100 * H,
    );
    assert!(matches!(live, Err(Refusal::DataNotProven { .. })));
    let t = apply(
        &t,
        &Action::Close,
        Role::SiteManager,
        ok(T0 + 5 * H),
        &p,
        T0 + 82 * H,
    )
    .unwrap();
    assert_eq!((t.status, t.closed_at), (Status::Closed, Some(T0 + 82 * H)));
}

#[test]
fn a_major_hazard_is_listed_reviewed_and_accepted_by_the_bureau() {
    let p = Policy::default();
    let t = Ticket::opened(Grade::General, true);
    let t = apply(
        &t,
        &Action::Register {
            grade: Grade::Major,
        },
        Role::SiteManager,
        ok(T0),
        &p,
        T0,
    )
    .unwrap();
    let list = Action::List {
        supervisor: "区民政局".into(),
        document_no: "民安督〔2026〕3号".into(),
        deadline: T0 + 600 * H,
    };
    assert_eq!(
        apply(&t, &list, Role::SiteManager, ok(T0), &p, T0),
        Err(Refusal::Role { needed: INSPECTOR })
    );
    let t = apply(&t, &list, Role::Inspector, ok(T0), &p, T0).unwrap();
    assert_eq!(t.status, Status::Listed);
    // The site cannot move the supervisor's deadline later by its plan.
    let t = apply(
        &t,
        &Action::StartRectification {
            plan: plan(T0 + 900 * H),
        },
        Role::SiteManager,
        ok(T0),
        &p,
        T0,
    )
    .unwrap();
    assert_eq!(t.deadline, Some(T0 + 600 * H));
    let t = apply(
        &t,
        &Action::ReportRectified,
        Role::SiteManager,
        ok(T0),
        &p,
        T0 + H,
    )
    .unwrap();
    assert_eq!(
        apply(
            &t,
            &Action::Review { passed: true },
            Role::SiteManager,
            ok(T0),
            &p,
            T0
        ),
        Err(Refusal::Role { needed: INSPECTOR })
    );
    // Review fails once: back to rectification.
    let t = apply(
        &t,
        &Action::Review { passed: false },
        Role::Inspector,
        ok(T0),
        &p,
        T0 + 2 * H,
    )
    .unwrap();
    assert_eq!(t.status, Status::Rectifying);
    let t = apply(
        &t,
        &Action::ReportRectified,
        Role::SiteManager,
        ok(T0),
        &p,
        T0 + 3 * H,
    )
    .unwrap();
    let t = apply(
        &t,
        &Action::Review { passed: true },
        Role::Inspector,
        ok(T0),
        &p,
        T0 + 4 * H,
    )
    .unwrap();
    assert_eq!(t.status, Status::PendingAcceptance);
    assert_eq!(
        apply(
            &t,
            &Action::Close,
            Role::Inspector,
            ok(T0),
            &p,
            T0 + 100 * H
        ),
        Err(Refusal::MajorNeedsAcceptance)
    );
    let t = apply(
        &t,
        &Action::Accept { passed: true },
        Role::Inspector,
        ok(T0),
        &p,
        T0 + 76 * H,
    )
    .unwrap();
    assert_eq!(t.status, Status::Closed);
}

#[test]
fn extensions_are_requested_in_time_and_decided_by_the_bureau() {
    let p = Policy::default();
    let t = Ticket::opened(Grade::General, false);
    let t = apply(
        &t,
        &Action::Register {
            grade: Grade::General,
        },
        Role::Duty,
        ok(T0),
        &p,
        T0,
    )
    .unwrap();
    let t = apply(
        &t,
        &Action::StartRectification {
            plan: plan(T0 + 60 * 24 * H),
        },
        Role::SiteManager,
        ok(T0),
        &p,
        T0,
    )
    .unwrap();
    let late = apply(
        &t,
        &Action::RequestExtension {
            until: T0 + 90 * 24 * H,
        },
        Role::SiteManager,
        ok(T0),
        &p,
        T0 + 40 * 24 * H,
    );
    assert_eq!(late, Err(Refusal::ExtensionTooLate { days: 28 }));
    let t = apply(
        &t,
        &Action::RequestExtension {
            until: T0 + 90 * 24 * H,
        },
        Role::SiteManager,
        ok(T0),
        &p,
        T0 + 24 * H,
    )
    .unwrap();
    assert_eq!(
        apply(
            &t,
            &Action::DecideExtension { approve: true },
            Role::SiteManager,
            ok(T0),
            &p,
            T0
        ),
        Err(Refusal::Role { needed: INSPECTOR })
    );
    let t = apply(
        &t,
        &Action::DecideExtension { approve: true },
        Role::Inspector,
        ok(T0),
        &p,
        T0 + 48 * H,
    )
    .unwrap();
    assert_eq!(
        (t.deadline, t.extension_requested),
        (Some(T0 + 90 * 24 * H), None)
    );
    assert_eq!(
        apply(
            &t,
            &Action::DecideExtension { approve: true },
            Role::Inspector,
            ok(T0),
            &p,
            T0
        ),
        Err(Refusal::NoExtensionPending)
    );
}

#[test]
fn a_recurrence_within_the_window_reopens() {
    let p = Policy::default();
    let mut t = Ticket::opened(Grade::General, false);
    t.status = Status::Closed;
    t.closed_at = Some(T0);
    let r = apply(&t, &Action::Reopen, Role::Duty, ok(T0), &p, T0 + 24 * H).unwrap();
    assert_eq!(r.status, Status::Rectifying);
    assert_eq!(
        apply(
            &t,
            &Action::Reopen,
            Role::Duty,
            ok(T0),
            &p,
            T0 + 91 * 24 * H
        ),
        Err(Refusal::ReopenWindowPassed)
    );
}

/// A deterministic random walk over actions, roles, data and time: no
/// path reaches 已销号 without a passed review (and, for 重大, an
/// acceptance) signed by an authorised role, and for sensor tickets
/// without the data period after the report.
#[test]
fn no_path_closes_without_review_sign_off_and_data() {
    let p = Policy::default();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let roles = [
        Role::Duty,
        Role::SiteManager,
        Role::Inspector,
        Role::Admin,
        Role::Installer,
    ];
    let mut closed_paths = 0;
    for _ in 0..3_000 {
        let mut t = Ticket::opened(
            if rnd(2) == 0 {
                Grade::General
            } else {
                Grade::Major
            },
            rnd(4) != 0,
        );
        let mut now = T0;
        let mut history: Vec<(Action, Role, Millis, DataProof)> = Vec::new();
        for _ in 0..120 {
            now += rnd(50) * H;
            let action = match rnd(10) {
                0 => Action::Register {
                    grade: if rnd(2) == 0 {
                        Grade::General
                    } else {
                        Grade::Major
                    },
                },
                1 => Action::List {
                    supervisor: "局".into(),
                    document_no: "1号".into(),
                    deadline: now + rnd(2000) * H,
                },
                2 => Action::StartRectification {
                    plan: plan(now + 1 + rnd(2000) * H),
                },
                3 => Action::ReportRectified,
                4 => Action::Review {
                    passed: rnd(3) != 0,
                },
                5 => Action::Accept {
                    passed: rnd(3) != 0,
                },
                6 => Action::Close,
                7 => Action::RequestExtension {
                    until: now + rnd(5000) * H,
                },
                8 => Action::DecideExtension {
                    approve: rnd(2) == 0,
                },
                _ => Action::Reopen,
            };
            let role = roles[rnd(roles.len() as u64) as usize];
            let data = DataProof {
                normal_since: if rnd(4) == 0 {
                    None
                } else {
                    Some(now.saturating_sub(rnd(200) * H))
                },
            };
            if let Ok(n) = apply(&t, &action, role, data, &p, now) {
                history.push((action, role, now, data));
                if n.status == Status::Closed && t.status != Status::Closed {
                    closed_paths += 1;
                    // The closing step: by an authorised role, after review.
                    let (last, role, at, data) = history.last().unwrap();
                    assert_ne!(*role, Role::Admin);
                    assert_ne!(*role, Role::Installer);
                    assert_ne!(*role, Role::Duty);
                    assert!(t.reviewed, "closed without a passed review: {history:?}");
                    match t.grade {
                        Grade::Major => assert!(
                            matches!(last, Action::Accept { passed: true })
                                && *role == Role::Inspector
                        ),
                        Grade::General => assert!(matches!(last, Action::Close)),
                    }
                    if t.sensor_sourced {
                        let since = data
                            .normal_since
                            .expect("data normal")
                            .max(t.rectified_at.expect("reported"));
                        assert!(
                            *at >= since + p.proof_period_ms,
                            "closed before the data period"
                        );
                    }
                }
                t = n;
            }
        }
    }
    assert!(
        closed_paths > 50,
        "the walk reaches closure often enough to mean something: {closed_paths}"
    );
}
