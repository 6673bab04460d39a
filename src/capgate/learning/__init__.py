"""Learning each site's captcha from paid upstream answers (docs/learning.md)."""
