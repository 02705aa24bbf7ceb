//! A step's (or a run's) one-word verdict from its checks' statuses, and the words for it: the
//! one place the web app, the CLI's text report and exports take them from, so a warning is never
//! shown as a plain pass and a check that could not run is never shown as a failure.

use crate::model::Status;

/// What a set of check results amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Every check passed (or did not apply), at least one passed.
    Pass,
    /// No check failed, at least one passed, and some warned: a pass, with advice worth reading.
    PassWithWarnings,
    /// At least one check failed: something the learner can act on.
    NotYet,
    /// Nothing failed, but not everything could be judged here (a skipped or broken check, a
    /// status this version does not know, nothing that applied): neither a pass nor a failure.
    CouldNotJudge,
}

/// How one status weighs in a verdict. By name, so a status added to the grader later (such as
/// `not-applicable`) is handled without this file knowing the variant; one it does not know at
/// all is neutral and never a pass.
fn weigh(status: &str) -> Weight {
    match status {
        "pass" => Weight::Pass,
        "warn" => Weight::Warn,
        "fail" => Weight::Fail,
        "not-applicable" | "n/a" | "na" => Weight::DoesNotApply,
        _ => Weight::Unjudged,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weight {
    Pass,
    Warn,
    Fail,
    DoesNotApply,
    Unjudged,
}

impl Verdict {
    /// The verdict of these statuses. No statuses at all could not be judged.
    pub fn of(statuses: impl IntoIterator<Item = Status>) -> Verdict {
        Self::of_names(statuses.into_iter().map(Status::as_str))
    }

    /// The verdict of statuses by their names (`pass`, `warn`, …), as stored or exported.
    pub fn of_names<'a>(statuses: impl IntoIterator<Item = &'a str>) -> Verdict {
        let (mut pass, mut warn, mut fail, mut unjudged) = (0usize, 0usize, 0usize, 0usize);
        for status in statuses {
            match weigh(status) {
                Weight::Pass => pass += 1,
                Weight::Warn => warn += 1,
                Weight::Fail => fail += 1,
                Weight::DoesNotApply => {}
                Weight::Unjudged => unjudged += 1,
            }
        }
        if fail > 0 {
            Verdict::NotYet
        } else if unjudged > 0 || pass == 0 {
            Verdict::CouldNotJudge
        } else if warn > 0 {
            Verdict::PassWithWarnings
        } else {
            Verdict::Pass
        }
    }

    /// Whether the step is done (a pass with warnings is).
    pub fn passed(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::PassWithWarnings)
    }

    /// A stable name for storage and machine-readable output.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::PassWithWarnings => "warn",
            Verdict::NotYet => "fail",
            Verdict::CouldNotJudge => "unjudged",
        }
    }

    /// The inverse of [`Verdict::as_str`]; `error` is how attempts that could not start were
    /// stored before there was a name for it.
    pub fn parse(text: &str) -> Option<Verdict> {
        match text {
            "pass" => Some(Verdict::Pass),
            "warn" => Some(Verdict::PassWithWarnings),
            "fail" => Some(Verdict::NotYet),
            "unjudged" | "error" => Some(Verdict::CouldNotJudge),
            _ => None,
        }
    }

    /// The verdict's words, as a learner reads them.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "Passed",
            Verdict::PassWithWarnings => "Passed with warnings",
            Verdict::NotYet => "Not yet",
            Verdict::CouldNotJudge => "Could not be judged here",
        }
    }

    /// The sentence after the label.
    pub fn explanation(self) -> &'static str {
        match self {
            Verdict::Pass => "Every check passed.",
            Verdict::PassWithWarnings => {
                "No check failed, but the warnings below are worth a look."
            }
            Verdict::NotYet => "Some checks failed; the evidence shows what the grader saw.",
            Verdict::CouldNotJudge => {
                "Nothing failed, but some checks could not run here; this is not a failed attempt."
            }
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}. {}", self.label(), self.explanation())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_has_its_own_verdict() {
        use Status::*;
        assert_eq!(Verdict::of([Pass, Pass]), Verdict::Pass);
        assert_eq!(Verdict::of([Pass, Warn]), Verdict::PassWithWarnings);
        assert_eq!(Verdict::of([Pass, Fail, Skip]), Verdict::NotYet);
        assert_eq!(Verdict::of([Pass, Skip]), Verdict::CouldNotJudge);
        assert_eq!(Verdict::of([Pass, Error]), Verdict::CouldNotJudge);
        // Warnings alone are not a pass of anything.
        assert_eq!(Verdict::of([Warn, Warn]), Verdict::CouldNotJudge);
        assert_eq!(Verdict::of([]), Verdict::CouldNotJudge);
    }

    #[test]
    fn a_status_it_does_not_know_is_never_a_pass() {
        assert_eq!(Verdict::of_names(["pass", "not-applicable"]), Verdict::Pass);
        assert_eq!(
            Verdict::of_names(["not-applicable"]),
            Verdict::CouldNotJudge
        );
        assert_eq!(
            Verdict::of_names(["pass", "something-new"]),
            Verdict::CouldNotJudge
        );
    }

    #[test]
    fn names_round_trip() {
        for verdict in [
            Verdict::Pass,
            Verdict::PassWithWarnings,
            Verdict::NotYet,
            Verdict::CouldNotJudge,
        ] {
            assert_eq!(Verdict::parse(verdict.as_str()), Some(verdict));
        }
    }
}
