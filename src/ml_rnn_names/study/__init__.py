"""The study service: campaign files → per-model Optuna studies → finalize → report."""

from ml_rnn_names.study.campaign import Campaign, RunSummary, StudyStatus
from ml_rnn_names.study.config import CampaignConfig, load_campaign

__all__ = ["Campaign", "CampaignConfig", "RunSummary", "StudyStatus", "load_campaign"]
