//! Length limits of a ticket step's text fields (文本长度上限). They end
//! up in the ledger, the audit trail and every console that shows the
//! ticket: a megabyte in 督办单位 must be refused, not stored. Pure.

use super::Action;

/// 督办单位, 督办文号, 责任单位, 责任人, 资金: a name or a short figure.
pub const MAX_SHORT: usize = 100;
/// 整改措施, 预案: a paragraph or two.
pub const MAX_LONG: usize = 2000;

/// A field over its limit: its name in Chinese and the limit in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong {
    pub field: &'static str,
    pub max: usize,
}

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}最多 {} 个字符", self.field, self.max)
    }
}

/// The first text field of `a` over its limit, if any.
pub fn check(a: &Action) -> Result<(), TooLong> {
    let fields: Vec<(&'static str, &str, usize)> = match a {
        Action::List {
            supervisor,
            document_no,
            ..
        } => vec![
            ("督办单位", supervisor, MAX_SHORT),
            ("督办文号", document_no, MAX_SHORT),
        ],
        Action::StartRectification { plan } => vec![
            ("责任单位", &plan.responsible_unit, MAX_SHORT),
            ("责任人", &plan.responsible_person, MAX_SHORT),
            ("整改措施", &plan.measures, MAX_LONG),
            ("资金", &plan.funds, MAX_SHORT),
            ("预案", &plan.contingency_plan, MAX_LONG),
        ],
        _ => Vec::new(),
    };
    for (field, text, max) in fields {
        if text.chars().count() > max {
            return Err(TooLong { field, max });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tickets::Rectification;

    #[test]
    fn each_field_is_held_to_its_limit_in_characters() {
        let plan = |measures: String, funds: String| Action::StartRectification {
            plan: Rectification {
                responsible_unit: "后勤部".into(),
                responsible_person: "王工".into(),
                measures,
                funds,
                deadline: 1,
                contingency_plan: "断电挂牌".into(),
            },
        };
        // 2000 Chinese characters are 6000 bytes: counted as 2000.
        assert_eq!(check(&plan("换".repeat(2000), "5000元".into())), Ok(()));
        assert_eq!(
            check(&plan("换".repeat(2001), "5000元".into())),
            Err(TooLong {
                field: "整改措施",
                max: 2000
            })
        );
        assert_eq!(
            check(&plan("换线".into(), "9".repeat(101)))
                .unwrap_err()
                .field,
            "资金"
        );
        let list = Action::List {
            supervisor: "x".repeat(1_000_000),
            document_no: "民消督〔2026〕1号".into(),
            deadline: 1,
        };
        assert_eq!(
            check(&list).unwrap_err().to_string(),
            "督办单位最多 100 个字符"
        );
        assert_eq!(check(&Action::Close), Ok(()));
    }
}
