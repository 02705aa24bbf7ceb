//! Who a signed-in person is: their account and its role. The session layer attaches a [`User`]
//! to each request; accounts create them.

/// Ordered by power: a check for "instructor or more" is `role >= Role::Instructor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Learner,
    Instructor,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Learner => "learner",
            Role::Instructor => "instructor",
            Role::Admin => "admin",
        }
    }

    /// Unknown values fall back to the least power.
    pub fn parse(text: &str) -> Role {
        match text {
            "admin" => Role::Admin,
            "instructor" => Role::Instructor,
            _ => Role::Learner,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub username: String,
    pub role: Role,
}
