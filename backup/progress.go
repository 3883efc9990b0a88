package backup

import "erg"

// The work under way, for Status: what the Backups page and the CLI show
// while a run or a restore goes on.

// setProgress says what a run is doing between sources, in words.
func (s *Service) setProgress(p string) {
	s.mu.Lock()
	s.progress, s.step = p, nil
	s.mu.Unlock()
}

// setStep says how far the work on a source has come.
func (s *Service) setStep(p erg.BackupProgress) {
	s.mu.Lock()
	s.progress, s.step = p.String(), &p
	s.mu.Unlock()
}

// stepper is the Progress function for a run's or a restorer's work on
// one source: each call updates the step from base.
func (s *Service) stepper(base erg.BackupProgress) func(Progress) {
	return func(p Progress) {
		base.Files, base.FilesDone, base.Bytes, base.BytesDone = p.Files, p.FilesDone, p.Bytes, p.BytesDone
		s.setStep(base)
	}
}

// endProgress clears what Status shows when the work is over.
func (s *Service) endProgress() {
	s.mu.Lock()
	s.progress, s.step = "", nil
	s.mu.Unlock()
}
