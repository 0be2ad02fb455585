//! The one error type of the core: a stable `code` plus a message naming what was wrong.

use std::fmt;

/// Stable error codes. Bindings expose them as the `code` property of a JS error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A missing id, a wrong argument type or an argument of a shape that is not accepted.
    InvalidArgument,
    /// An amount that is not a finite number (or does not fit a decimal).
    InvalidAmount,
    /// A resource that is not configured (or does not exist).
    UnknownResource,
    /// A field that is not configured, or an omitted field on a resource with several fields.
    UnknownField,
    /// A nested path that breaks the nesting rules.
    InvalidPath,
    /// A date, week or month that does not exist.
    InvalidDate,
    /// An analytics query while analytics are disabled.
    AnalyticsDisabled,
    /// The same idempotency key reused with another operation or amount.
    IdempotencyMismatch,
    /// A record that does not exist.
    RecordNotFound,
    /// A record that does not match its resource's attributes.
    Validation,
    /// A conditional write that lost (create-only on an existing key, stale version).
    Conflict,
    /// The storage failed (I/O, network, permissions).
    Storage,
    /// Invalid plugin or database configuration.
    InvalidConfig,
}

impl ErrorCode {
    /// The code as the string bindings expose, e.g. `ERR_INVALID_AMOUNT`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "ERR_INVALID_ARGUMENT",
            ErrorCode::InvalidAmount => "ERR_INVALID_AMOUNT",
            ErrorCode::UnknownResource => "ERR_UNKNOWN_RESOURCE",
            ErrorCode::UnknownField => "ERR_UNKNOWN_FIELD",
            ErrorCode::InvalidPath => "ERR_INVALID_PATH",
            ErrorCode::InvalidDate => "ERR_INVALID_DATE",
            ErrorCode::AnalyticsDisabled => "ERR_ANALYTICS_DISABLED",
            ErrorCode::IdempotencyMismatch => "ERR_IDEMPOTENCY_MISMATCH",
            ErrorCode::RecordNotFound => "ERR_RECORD_NOT_FOUND",
            ErrorCode::Validation => "ERR_VALIDATION",
            ErrorCode::Conflict => "ERR_CONFLICT",
            ErrorCode::Storage => "ERR_STORAGE",
            ErrorCode::InvalidConfig => "ERR_INVALID_CONFIG",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with a stable [`ErrorCode`] and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
        }
    }
    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
    /// The message (never contains credentials).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// An `ERR_INVALID_ARGUMENT` error.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub(crate) fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidConfig, message)
    }
    /// An `ERR_STORAGE` error (a store or a host database failed).
    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Storage, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// Result alias of the core.
pub type Result<T> = std::result::Result<T, Error>;
