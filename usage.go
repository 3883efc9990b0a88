package erg

// GrainUsage is what one grain uses of the node and the limits it runs
// under, shown to the grain's owner (and to the node's owner in the list
// of every grain); nobody else sees it.
type GrainUsage struct {
	// Measured says the figures below are of a run: the current one, or
	// for a stopped grain the last one since the node started, as last
	// read. False for a grain that has not run since: CPUSeconds and the
	// memory figures are then 0.
	Measured   bool    `json:"measured"`
	CPUSeconds float64 `json:"cpuSeconds"` // CPU time of the run, every core summed
	// MemoryBytes is charged to it now (0 when stopped); MemoryPeakBytes
	// the run's highest, where the kernel gives it.
	MemoryBytes     int64 `json:"memoryBytes"`
	MemoryPeakBytes int64 `json:"memoryPeakBytes,omitempty"`
	Processes       int   `json:"processes"` // now, counting the sandbox's init
	DiskBytes       int64 `json:"diskBytes"` // what its /var takes on disk: blocks in use
	// The limits, as its next start (or its current run) applies them.
	// DiskEnforced says the kernel bounds its /var (its own file-system
	// image); otherwise the node measures it and stops it when over.
	MemoryLimitBytes int64 `json:"memoryLimitBytes"`
	DiskLimitBytes   int64 `json:"diskLimitBytes"`
	DiskEnforced     bool  `json:"diskEnforced"`
	ProcessLimit     int   `json:"processLimit"`
	CPUPercent       int   `json:"cpuPercent"` // CPU ceiling in percent of one core; 0: none
	// CPUPercentSet is the node owner's own ceiling for this grain, over
	// its app's and the node's default; 0: none set.
	CPUPercentSet int `json:"cpuPercentSet,omitempty"`
	// DiskMBSet is the node owner's bound on its /var in MiB (erg grain
	// disk); 0: none set.
	DiskMBSet int `json:"diskMBSet,omitempty"`
	// Warnings say it is near a limit or was stopped by one.
	Warnings []string `json:"warnings,omitempty"`
}
