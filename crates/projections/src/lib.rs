//! Projections: transactional subscribers that build the query views from the event log (issue 6).
