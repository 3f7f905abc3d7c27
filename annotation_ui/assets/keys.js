() => {
  // Keyboard shortcuts click the matching button, so keys and mouse take the same path.
  const KEYS = {
    "1": "choose-left", "ArrowLeft": "choose-left",
    "2": "choose-right", "ArrowRight": "choose-right",
    "3": "choose-tie", "4": "choose-both-bad",
    "u": "undo", "U": "undo",
  };
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" ||
                              target.tagName === "SELECT" || target.isContentEditable);
    if (typing) {
      // Escape leaves the description box, so the next key is a shortcut again.
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const id = KEYS[event.key];
    if (!id) return;
    const button = document.getElementById(id);
    if (button && !button.disabled) {
      event.preventDefault();
      button.click();
    }
  });
}
