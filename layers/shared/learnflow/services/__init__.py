"""Operations that span repositories and outside services (payments)."""
