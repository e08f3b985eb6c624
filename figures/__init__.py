"""Figure scripts: each ``fig_<topic>.py`` reads saved results only and writes PNG and PDF."""
