//! Undo steps for a half-done `create`: every step that leaves something behind (a folder, a
//! mount, a process) pushes its undo; on error they run in reverse, so bad input or a failed
//! boot leaves nothing behind.

type Undo = (&'static str, Box<dyn FnOnce()>);

#[derive(Default)]
pub struct Rollback {
    steps: Vec<Undo>,
}

impl Rollback {
    pub fn new() -> Self {
        Rollback { steps: Vec::new() }
    }

    pub fn push(&mut self, what: &'static str, undo: impl FnOnce() + 'static) {
        self.steps.push((what, Box::new(undo)));
    }

    /// Success: keep everything.
    pub fn disarm(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        while let Some((what, undo)) = self.steps.pop() {
            log::debug!("rollback: {what}");
            undo();
        }
    }
}
