//! The command side: the send and recall chains that turn API requests into accepted events (issue 3).
