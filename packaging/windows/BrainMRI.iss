; Inno Setup script for a Windows installer of the one-folder build (run after `pyinstaller packaging\brainmri.spec`).
#define AppVersion "0.1.0"
[Setup]
AppName=BrainMRI
AppVersion={#AppVersion}
AppPublisher=BrainMRI contributors
DefaultDirName={autopf}\BrainMRI
DefaultGroupName=BrainMRI
OutputDir=..\..\dist
OutputBaseFilename=BrainMRI-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
ArchitecturesInstallIn64BitMode=x64compatible
PrivilegesRequiredOverridesAllowed=dialog

[Files]
Source: "..\..\dist\BrainMRI\*"; DestDir: "{app}"; Flags: recursesubdirs ignoreversion

[Icons]
Name: "{group}\BrainMRI"; Filename: "{app}\BrainMRI.exe"
Name: "{group}\Uninstall BrainMRI"; Filename: "{uninstallexe}"

[Run]
Filename: "{app}\BrainMRI.exe"; Parameters: "--self-test"; Flags: runhidden waituntilterminated; StatusMsg: "Checking the installation..."
