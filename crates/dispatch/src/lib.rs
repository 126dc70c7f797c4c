//! Dispatch: workers that react to accepted events and call the suppliers (issue 4).
