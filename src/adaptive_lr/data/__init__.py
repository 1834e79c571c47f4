"""DataModules: one per dataset, all feeding batches by index slicing from in-memory tensors."""
