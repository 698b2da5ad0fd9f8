//! The breaker of one peer as a pure state machine: every input carries the
//! time, every output says which transition happened, and the randomness
//! for the open period is passed in. No clocks, locks or requests here.

use std::time::Duration;

use tokio::time::Instant;

use super::window::Window;
use super::BreakerSettings;
use crate::backoff::Jitter;
use crate::deadline::later;
use crate::observer::BreakerState;

/// The circuit breaker of one peer.
#[derive(Debug, Clone)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    /// Failures in a row while closed.
    consecutive: u32,
    /// Outcomes while closed, for the failure-ratio rule.
    window: Window,
    /// The open period (before jitter) used by the latest trip; doubles on
    /// each failed probe up to the maximum.
    period: Duration,
    /// Bumped on every transition so outcomes of requests admitted in an
    /// earlier state are ignored.
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probing: bool },
}

/// Proof that a request was admitted; hand it back with the outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    generation: u64,
    probe: bool,
}

/// Result of asking for admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// `Some` when the request may go; `None` means fail fast.
    pub admission: Option<Admission>,
    /// A state change the request caused (open → half-open).
    pub transition: Option<BreakerState>,
}

// === impl Breaker ===

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings, now: Instant) -> Self {
        Self {
            settings,
            state: State::Closed,
            consecutive: 0,
            window: Window::new(settings.window, now),
            period: settings.open,
            generation: 0,
        }
    }

    /// The current state, for the gauge. An open breaker whose period has
    /// passed reads as open until a request makes it half-open.
    pub fn state(&self) -> BreakerState {
        match self.state {
            State::Closed => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a request sent at `now` would be admitted: what a keyless
    /// balancer asks to avoid open endpoints. Does not change state.
    pub fn is_available(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { probing } => !probing,
        }
    }

    /// When an open breaker will admit a probe.
    pub fn open_until(&self) -> Option<Instant> {
        match self.state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Asks to send one request at `now`. Closed admits all; open admits
    /// none until its period passes, then becomes half-open and admits one
    /// probe; half-open admits one probe at a time.
    pub fn admit(&mut self, now: Instant) -> Decision {
        let mut transition = None;
        if let State::Open { until } = self.state {
            if now < until {
                return Decision::refused();
            }
            transition = Some(self.set(State::HalfOpen { probing: false }));
        }
        let probe = match &mut self.state {
            State::Closed => false,
            State::HalfOpen { probing } if !*probing => {
                *probing = true;
                true
            }
            _ => {
                return Decision {
                    admission: None,
                    transition,
                }
            }
        };
        Decision {
            admission: Some(Admission {
                generation: self.generation,
                probe,
            }),
            transition,
        }
    }

    /// Reports the outcome of an admitted request; returns the transition it
    /// caused. A failure is any error or a 5xx response.
    pub fn record(
        &mut self,
        a: Admission,
        success: bool,
        now: Instant,
        jitter: &Jitter,
    ) -> Option<BreakerState> {
        if a.generation != self.generation {
            return None; // admitted before the last transition: stale news
        }
        match self.state {
            State::Closed => {
                self.window.record(now, !success);
                if success {
                    self.consecutive = 0;
                    return None;
                }
                self.consecutive += 1;
                if self.should_trip(now) {
                    self.period = self.settings.open;
                    return Some(self.trip(now, jitter));
                }
                None
            }
            State::HalfOpen { .. } if a.probe => {
                if success {
                    self.consecutive = 0;
                    self.period = self.settings.open;
                    self.window.reset(now);
                    Some(self.set(State::Closed))
                } else {
                    self.period = self.period.saturating_mul(2).min(self.settings.max_open);
                    Some(self.trip(now, jitter))
                }
            }
            _ => None,
        }
    }

    /// The admitted request ended without an outcome (the caller went away):
    /// frees the probe slot so the breaker cannot stay half-open forever.
    pub fn cancel(&mut self, a: Admission) {
        if a.probe && a.generation == self.generation {
            self.state = State::HalfOpen { probing: false };
        }
    }

    fn should_trip(&mut self, now: Instant) -> bool {
        if self.consecutive >= self.settings.consecutive_failures {
            return true;
        }
        let (total, failures) = self.window.totals(now);
        total >= self.settings.min_requests
            && u64::from(failures) * 100
                >= u64::from(self.settings.failure_percent) * u64::from(total)
    }

    fn trip(&mut self, now: Instant, jitter: &Jitter) -> BreakerState {
        let ratio = self.settings.jitter;
        let ratio = if ratio.is_finite() {
            ratio.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let extra = jitter.up_to(self.period.mul_f64(ratio));
        self.consecutive = 0;
        self.window.reset(now);
        self.set(State::Open {
            until: later(now, self.period.saturating_add(extra)),
        })
    }

    fn set(&mut self, state: State) -> BreakerState {
        self.state = state;
        self.generation += 1;
        self.state()
    }
}

// === impl Decision ===

impl Decision {
    fn refused() -> Self {
        Self {
            admission: None,
            transition: None,
        }
    }
}

#[cfg(test)]
mod tests;
