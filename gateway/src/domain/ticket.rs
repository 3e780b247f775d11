//! The hazard ticket's closed loop (隐患闭环) as a pure state machine:
//! `待登记 → 已登记 → (重大: 已挂牌) → 整改中 → 待复查 → (不合格 → 整改中)
//! → (重大: 待验收) → 已销号`, with a role guard on every step, deadline
//! extensions (申请延期) and reopening when the hazard recurs.
//!
//! Pure: the ticket's state, the action, who acts, the data evidence and the
//! time go in; the new state (or the reason for refusal, in Chinese for the
//! person who tried) comes out. The store records every accepted step.

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
    crate::domain::labels::ticket_status(s.code())
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

/// What evidence a ticket, and the gateway in all, already hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvidenceUsage {
    /// Notes and files on the ticket.
    pub entries: u64,
    /// Files on the ticket.
    pub files: u64,
    /// Bytes of the ticket's files.
    pub bytes: u64,
    /// Bytes of every stored file, each counted once.
    pub total_bytes: u64,
}

#[cfg(test)]
mod tests;
