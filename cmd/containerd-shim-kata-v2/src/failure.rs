//! Why a task call failed, in containerd's error kinds (ttrpc status codes).

/// Why a task call failed, as containerd's error kinds.
#[derive(Debug)]
pub enum Failure {
    NotFound(String),
    AlreadyExists(String),
    FailedPrecondition(String),
    InvalidArgument(String),
    Other(String),
}

impl From<sandbox::Error> for Failure {
    fn from(e: sandbox::Error) -> Self {
        match &e {
            sandbox::Error::Store(store::Error::NotFound(_)) => Failure::NotFound(e.to_string()),
            sandbox::Error::Store(store::Error::Exists(_)) => Failure::AlreadyExists(e.to_string()),
            sandbox::Error::BadState { .. } => Failure::FailedPrecondition(e.to_string()),
            _ => Failure::Other(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, Failure>;
