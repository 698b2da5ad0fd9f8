//! bank-load
