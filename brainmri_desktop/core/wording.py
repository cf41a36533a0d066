"""Words a reader sees beside every result, in the window, the PDF and the command line alike."""

DISCLAIMER = ("Triage aid, not a diagnosis. The probabilities come from a model trained on public 2-D MRI slices; "
              "every finding needs review by a qualified reader.")
