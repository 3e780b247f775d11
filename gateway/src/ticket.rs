//! The hazard ticket's closed loop (隐患闭环) as a pure state machine:
//! `待登记 → 已登记 → (重大: 已挂牌) → 整改中 → 待复查 → (不合格 → 整改中)
//! → (重大: 待验收) → 已销号`, with a role guard on every step, deadline
//! extensions (申请延期) and reopening when the hazard recurs.
//!
//! Pure: the ticket's state, the action, who acts, the data evidence and the
//! time go in; the new state (or the reason for refusal, in Chinese for the
//! person who tried) comes out. The store records every accepted step.

pub mod limits;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// The status of a ticket. Codes are stable; labels are for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// 待登记: opened automatically, not yet registered in the ledger.
    PendingRegistration,
    /// 已登记: in the ledger (登记建档).
    Registered,
    /// 已挂牌: a 重大 hazard under supervision (挂牌督办).
    Listed,
    /// 整改中: being rectified (五落实 assigned).
    Rectifying,
    /// 待复查: rectification reported, awaiting re-inspection.
    PendingReview,
    /// 待验收: a 重大 hazard passed review, awaiting acceptance.
    PendingAcceptance,
    /// 已销号: closed.
    Closed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::PendingRegistration,
        Status::Registered,
        Status::Listed,
        Status::Rectifying,
        Status::PendingReview,
        Status::PendingAcceptance,
        Status::Closed,
    ];

    pub const fn code(self) -> &'static str {
        match self {
            Status::PendingRegistration => "pending_registration",
            Status::Registered => "registered",
            Status::Listed => "listed",
            Status::Rectifying => "rectifying",
            Status::PendingReview => "pending_review",
            Status::PendingAcceptance => "pending_acceptance",
            Status::Closed => "closed",
        }
    }

    pub fn from_code(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.code() == s)
    }
}

/// 一般隐患 or 重大隐患.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    General,
    Major,
}

impl Grade {
    pub fn from_code(s: &str) -> Option<Grade> {
        match s {
            "general" => Some(Grade::General),
            "major" => Some(Grade::Major),
            _ => None,
        }
    }

    pub const fn code(self) -> &'static str {
        match self {
            Grade::General => "general",
            Grade::Major => "major",
        }
    }
}

/// Who acts, by role (DOMAIN.md §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 值班员.
    Duty,
    /// 机构负责人.
    SiteManager,
    /// 民政局监管.
    Inspector,
    /// 管理员: administers users; signs off nothing.
    Admin,
    /// 安装人员: registers sites and nodes and their credentials; signs off nothing.
    Installer,
}

/// The 五落实 of a rectification: 责任、措施、资金、时限、预案.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rectification {
    /// 责任单位.
    #[schema(max_length = 100)]
    pub responsible_unit: String,
    /// 责任人.
    #[schema(max_length = 100)]
    pub responsible_person: String,
    /// 整改措施.
    #[schema(max_length = 2000)]
    pub measures: String,
    /// 资金.
    #[schema(max_length = 100)]
    pub funds: String,
    /// 时限: the deadline, ms since the epoch.
    #[schema(value_type = u64)]
    pub deadline: Millis,
    /// 预案: the interim safety plan until fixed.
    #[schema(max_length = 2000)]
    pub contingency_plan: String,
}

/// An action on a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// 登记: register in the ledger with a grade.
    Register { grade: Grade },
    /// 挂牌督办: a 重大 hazard listed by the supervising unit.
    List {
        /// 督办单位.
        #[schema(max_length = 100)]
        supervisor: String,
        /// 督办文号.
        #[schema(max_length = 100)]
        document_no: String,
        /// 整改时限, ms since the epoch.
        #[schema(value_type = u64)]
        deadline: Millis,
    },
    /// 落实整改: rectification starts with its 五落实.
    StartRectification { plan: Rectification },
    /// 整改完成: the site reports the rectification done.
    ReportRectified,
    /// 复查: re-inspection, passed or not (不合格 → back to rectification).
    Review { passed: bool },
    /// 验收: acceptance of a 重大 hazard, passed or not.
    Accept { passed: bool },
    /// 销号: the sign-off that closes a 一般 hazard after review.
    Close,
    /// 申请延期: filed before the deadline.
    RequestExtension {
        /// The deadline asked for, ms since the epoch.
        #[schema(value_type = u64)]
        until: Millis,
    },
    /// 批准延期 / 驳回: the supervising role decides.
    DecideExtension { approve: bool },
    /// 重新打开: the same hazard recurred within the window after closing.
    Reopen,
}

impl Action {
    pub const fn code(&self) -> &'static str {
        match self {
            Action::Register { .. } => "register",
            Action::List { .. } => "list",
            Action::StartRectification { .. } => "start_rectification",
            Action::ReportRectified => "report_rectified",
            Action::Review { .. } => "review",
            Action::Accept { .. } => "accept",
            Action::Close => "close",
            Action::RequestExtension { .. } => "request_extension",
            Action::DecideExtension { .. } => "decide_extension",
            Action::Reopen => "reopen",
        }
    }
}

/// What the machine needs to know of a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub status: Status,
    pub grade: Grade,
    /// Opened from sensor data: closing needs the data to prove the fix.
    pub sensor_sourced: bool,
    /// The deadline in force (时限), if any.
    pub deadline: Option<Millis>,
    /// When the rectification was last reported done.
    pub rectified_at: Option<Millis>,
    /// A pending extension request.
    pub extension_requested: Option<Millis>,
    /// Whether review passed (复查合格) since the last report.
    pub reviewed: bool,
    /// When it was closed.
    pub closed_at: Option<Millis>,
}

impl Ticket {
    /// A ticket as opened automatically from an alarm.
    pub fn opened(grade: Grade, sensor_sourced: bool) -> Ticket {
        Ticket {
            status: Status::PendingRegistration,
            grade,
            sensor_sourced,
            deadline: None,
            rectified_at: None,
            extension_requested: None,
            reviewed: false,
            closed_at: None,
        }
    }
}

/// What the data says about the hazard's channel: since when it has been
/// normal (no pre-alarm, no fault, online), or `None` if it is not now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataProof {
    pub normal_since: Option<Millis>,
}

/// Policy figures (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How long the telemetry must be normal after the rectification report
    /// before a sensor-sourced ticket can close (default 72 h).
    pub proof_period_ms: Millis,
    /// An extension must be requested at least this long before the deadline.
    pub extension_notice_ms: Millis,
    /// A closed ticket recurring within this window is reopened.
    pub reopen_window_ms: Millis,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            proof_period_ms: 72 * 3_600_000,
            // The seeds ask for 20 working days; 28 calendar days is the conservative reading.
            extension_notice_ms: 28 * 86_400_000,
            reopen_window_ms: 90 * 86_400_000,
        }
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("当前状态“{status}”不能执行此操作")]
    WrongStatus { status: &'static str },
    #[error("无权执行此操作（需要{needed}）")]
    Role { needed: &'static str },
    #[error("只有重大隐患需要挂牌督办/验收")]
    NotMajor,
    #[error("重大隐患须先挂牌督办、复查后经验收方可销号")]
    MajorNeedsAcceptance,
    #[error("五落实信息不完整：{missing}")]
    IncompletePlan { missing: &'static str },
    #[error("延期申请须在整改期限前至少 {days} 天提出")]
    ExtensionTooLate { days: u64 },
    #[error("延期后的期限须晚于当前期限")]
    ExtensionNotLater,
    #[error("没有待审批的延期申请")]
    NoExtensionPending,
    #[error("监测数据尚未证明整改有效：{reason}")]
    DataNotProven { reason: String },
    #[error("超过重新打开的时间窗口，请新开工单")]
    ReopenWindowPassed,
}

fn label(s: Status) -> &'static str {
    crate::labels::ticket_status(s.code())
}

fn require(role: Role, allowed: &[Role], needed: &'static str) -> Result<(), Refusal> {
    if allowed.contains(&role) {
        Ok(())
    } else {
        Err(Refusal::Role { needed })
    }
}

const MANAGER: &str = "机构负责人";
const INSPECTOR: &str = "民政局监管人员";
const REGISTRAR: &str = "值班员或机构负责人";
const REVIEWER: &str = "机构负责人（一般隐患）或民政局监管人员";

/// Applies `action` by someone in `role` at `now`; returns the new state.
pub fn apply(
    t: &Ticket,
    action: &Action,
    role: Role,
    data: DataProof,
    policy: &Policy,
    now: Millis,
) -> Result<Ticket, Refusal> {
    use Status::*;
    let wrong = || Refusal::WrongStatus {
        status: label(t.status),
    };
    let mut next = t.clone();
    match action {
        Action::Register { grade } => {
            require(role, &[Role::Duty, Role::SiteManager], REGISTRAR)?;
            if t.status != PendingRegistration {
                return Err(wrong());
            }
            next.grade = *grade;
            next.status = Registered;
        }
        Action::List {
            deadline,
            supervisor,
            document_no,
        } => {
            require(role, &[Role::Inspector], INSPECTOR)?;
            if t.grade != Grade::Major {
                return Err(Refusal::NotMajor);
            }
            if t.status != Registered {
                return Err(wrong());
            }
            if supervisor.trim().is_empty() {
                return Err(Refusal::IncompletePlan {
                    missing: "督办单位",
                });
            }
            if document_no.trim().is_empty() {
                return Err(Refusal::IncompletePlan { missing: "文号" });
            }
            next.deadline = Some(*deadline);
            next.status = Listed;
        }
        Action::StartRectification { plan } => {
            require(role, &[Role::SiteManager], MANAGER)?;
            let ready = match t.grade {
                Grade::General => t.status == Registered,
                Grade::Major => t.status == Listed,
            };
            if !ready {
                return Err(if t.grade == Grade::Major && t.status == Registered {
                    Refusal::MajorNeedsAcceptance
                } else {
                    wrong()
                });
            }
            for (value, missing) in [
                (&plan.responsible_unit, "责任单位"),
                (&plan.responsible_person, "责任人"),
                (&plan.measures, "整改措施"),
                (&plan.funds, "资金"),
                (&plan.contingency_plan, "预案"),
            ] {
                if value.trim().is_empty() {
                    return Err(Refusal::IncompletePlan { missing });
                }
            }
            if plan.deadline <= now {
                return Err(Refusal::IncompletePlan {
                    missing: "时限（须晚于当前时间）",
                });
            }
            // A 挂牌 deadline set by the supervisor is not moved by the site.
            next.deadline = Some(t.deadline.map_or(plan.deadline, |d| d.min(plan.deadline)));
            next.status = Rectifying;
        }
        Action::ReportRectified => {
            require(role, &[Role::SiteManager], MANAGER)?;
            if t.status != Rectifying {
                return Err(wrong());
            }
            next.rectified_at = Some(now);
            next.reviewed = false;
            next.status = PendingReview;
        }
        Action::Review { passed } => {
            let allowed: &[Role] = match t.grade {
                Grade::General => &[Role::SiteManager, Role::Inspector],
                Grade::Major => &[Role::Inspector],
            };
            require(
                role,
                allowed,
                if t.grade == Grade::Major {
                    INSPECTOR
                } else {
                    REVIEWER
                },
            )?;
            if t.status != PendingReview {
                return Err(wrong());
            }
            match (passed, t.grade) {
                (false, _) => next.status = Rectifying,
                (true, Grade::General) => next.reviewed = true,
                (true, Grade::Major) => {
                    next.reviewed = true;
                    next.status = PendingAcceptance;
                }
            }
        }
        Action::Accept { passed } => {
            require(role, &[Role::Inspector], INSPECTOR)?;
            if t.grade != Grade::Major {
                return Err(Refusal::NotMajor);
            }
            if t.status != PendingAcceptance {
                return Err(wrong());
            }
            if !passed {
                next.status = Rectifying;
                next.reviewed = false;
            } else {
                prove(t, data, policy, now)?;
                next.status = Closed;
                next.closed_at = Some(now);
            }
        }
        Action::Close => {
            require(role, &[Role::SiteManager, Role::Inspector], REVIEWER)?;
            if t.grade == Grade::Major {
                return Err(Refusal::MajorNeedsAcceptance);
            }
            if t.status != PendingReview || !t.reviewed {
                return Err(wrong());
            }
            prove(t, data, policy, now)?;
            next.status = Closed;
            next.closed_at = Some(now);
        }
        Action::RequestExtension { until } => {
            require(role, &[Role::SiteManager], MANAGER)?;
            if !matches!(t.status, Listed | Rectifying) {
                return Err(wrong());
            }
            let deadline = t.deadline.ok_or_else(wrong)?;
            if *until <= deadline {
                return Err(Refusal::ExtensionNotLater);
            }
            if now.saturating_add(policy.extension_notice_ms) > deadline {
                return Err(Refusal::ExtensionTooLate {
                    days: policy.extension_notice_ms / 86_400_000,
                });
            }
            next.extension_requested = Some(*until);
        }
        Action::DecideExtension { approve } => {
            require(role, &[Role::Inspector], INSPECTOR)?;
            let until = t.extension_requested.ok_or(Refusal::NoExtensionPending)?;
            if *approve {
                next.deadline = Some(until);
            }
            next.extension_requested = None;
        }
        Action::Reopen => {
            require(
                role,
                &[Role::Duty, Role::SiteManager, Role::Inspector],
                REGISTRAR,
            )?;
            let closed_at = match (t.status, t.closed_at) {
                (Closed, Some(at)) => at,
                _ => return Err(wrong()),
            };
            if now.saturating_sub(closed_at) > policy.reopen_window_ms {
                return Err(Refusal::ReopenWindowPassed);
            }
            next.status = Rectifying;
            next.closed_at = None;
            next.reviewed = false;
            next.rectified_at = None;
        }
    }
    Ok(next)
}

/// The steps someone in `role` may take on `t` now, by action code, for a
/// console to offer: each action is tried on the machine above with
/// placeholder details and data that proves the fix, and kept unless the
/// status, the grade or the role rules it out. A step offered here may still
/// be refused for its details (an incomplete 五落实, a late extension, data
/// that does not prove the fix yet); the refusal says why.
pub fn offered(t: &Ticket, role: Role, policy: &Policy, now: Millis) -> Vec<&'static str> {
    let later = now.saturating_add(365 * 86_400_000);
    let deadline = t.deadline.unwrap_or(later);
    let filled = |s: &str| s.to_string();
    let tries = [
        Action::Register { grade: t.grade },
        Action::List {
            supervisor: filled("督办单位"),
            document_no: filled("文号"),
            deadline: later,
        },
        Action::StartRectification {
            plan: Rectification {
                responsible_unit: filled("单位"),
                responsible_person: filled("人"),
                measures: filled("措施"),
                funds: filled("资金"),
                deadline: later,
                contingency_plan: filled("预案"),
            },
        },
        Action::ReportRectified,
        Action::Review { passed: true },
        Action::Accept { passed: true },
        Action::Close,
        Action::RequestExtension {
            until: deadline.saturating_add(86_400_000),
        },
        Action::DecideExtension { approve: true },
        Action::Reopen,
    ];
    let proven = DataProof {
        normal_since: Some(0),
    };
    let relaxed = Policy {
        proof_period_ms: 0,
        ..*policy
    };
    tries
        .iter()
        .filter(|a| match apply(t, a, role, proven, &relaxed, now) {
            Ok(_) => true,
            Err(
                Refusal::WrongStatus { .. }
                | Refusal::Role { .. }
                | Refusal::NotMajor
                | Refusal::MajorNeedsAcceptance
                | Refusal::NoExtensionPending
                | Refusal::ReopenWindowPassed,
            ) => false,
            Err(_) => true,
        })
        .map(Action::code)
        .collect()
}

/// Closure proven by data: the channel normal since no later than the
/// rectification report, for the whole proof period.
fn prove(t: &Ticket, data: DataProof, policy: &Policy, now: Millis) -> Result<(), Refusal> {
    if !t.sensor_sourced {
        return Ok(());
    }
    let reported = t.rectified_at.ok_or(Refusal::WrongStatus {
        status: label(t.status),
    })?;
    let Some(since) = data.normal_since else {
        return Err(Refusal::DataNotProven {
            reason: "该回路当前仍有预警、故障或离线".into(),
        });
    };
    let from = since.max(reported);
    let needed = from.saturating_add(policy.proof_period_ms);
    if now < needed {
        let hours = (needed - now).div_ceil(3_600_000);
        return Err(Refusal::DataNotProven {
            reason: format!(
                "整改后数据需连续正常 {} 小时，还差约 {hours} 小时",
                policy.proof_period_ms / 3_600_000
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
